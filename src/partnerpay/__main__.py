from partnerpay.cli import app

app(prog_name="partnerpay")
