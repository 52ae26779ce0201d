"""`python -m services.customer [serve|migrate]`: configuration from the environment."""

from libs.common.process import main
from services.customer.service import SPEC

if __name__ == "__main__":
    main(SPEC)
