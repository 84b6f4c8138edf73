"""Python authlib's OAuth2Session against Ekko Connect: password grant, then refresh."""
import os
import sys

from authlib.integrations.requests_client import OAuth2Session

base = os.environ["EKKO_BASE"]
failed = False


def check(name, ok, detail=""):
    global failed
    print(("PASS" if ok else "FAIL") + f" authlib: {name}" + ("" if ok else f": {detail}"))
    failed = failed or not ok


try:
    s = OAuth2Session(os.environ["CLIENT_ID"], os.environ["CLIENT_SECRET"], scope="public")
    token = s.fetch_token(
        f"{base}/oauth/token",
        grant_type="password",
        username=os.environ["EMAIL"],
        password=os.environ["PASSWORD"],
    )
    check("password grant", bool(token.get("access_token") and token.get("refresh_token")), token)
    me = s.get(f"{base}/api/v1/users/me.json").json()
    check("the session's token works", me.get("email") == os.environ["EMAIL"], me)
    new = s.refresh_token(f"{base}/oauth/token", refresh_token=token["refresh_token"])
    check("refresh", new["access_token"] != token["access_token"] and new["refresh_token"] != token["refresh_token"], new)
except Exception as e:  # noqa: BLE001
    check("flow", False, repr(e))
sys.exit(1 if failed else 0)
