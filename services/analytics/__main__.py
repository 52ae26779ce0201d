"""`python -m services.analytics [serve|migrate]`: configuration from the environment."""

from libs.common.service import main
from services.analytics.service import SPEC

if __name__ == "__main__":
    main(SPEC)
