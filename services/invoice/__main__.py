"""`python -m services.invoice [serve|migrate]`: configuration from the environment."""

from libs.common.process import main
from services.invoice.service import SPEC

if __name__ == "__main__":
    main(SPEC)
