"""`checkout-admin` / `python -m checkout_admin`."""

from checkout_admin.app import app


def main() -> None:
    app()


if __name__ == "__main__":
    main()
