"""`python -m services.merchant [serve|migrate]`: configuration from the environment."""

from libs.common.process import main
from services.merchant.service import SPEC

if __name__ == "__main__":
    main(SPEC)
