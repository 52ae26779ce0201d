"""`python -m services.analytics [serve|migrate]`: configuration from the environment."""

from libs.common.process import main
from services.analytics.service import SPEC

if __name__ == "__main__":
    main(SPEC)
