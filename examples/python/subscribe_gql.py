# The README's live-tracks example: gql's Phoenix channel transport.
#   env:  MUNIC_AUTH="Bearer <access_token>"; EKKO_BASE (default http://127.0.0.1:4000)
#   args: --max N  exit after N results (default: run forever)
import argparse
import asyncio
from os import environ
from gql import gql, Client
from gql.transport.phoenix_channel_websockets import PhoenixChannelWebsocketsTransport

BASE = environ.get("EKKO_BASE", "http://127.0.0.1:4000")
WS_BASE = "ws" + BASE[len("http"):] if BASE.startswith("http") else BASE

parser = argparse.ArgumentParser()
parser.add_argument("--max", type=int, default=None, help="exit after N results")
args = parser.parse_args()

SUBSCRIPTION = gql("""
subscription {
  deviceNotifications(deviceIds: ["359881234567899"]) {
    deviceId
    ... on Track { recorded_at fields { name value coordinates { lat lng time } } }
  }
}""")

async def main():
    transport = PhoenixChannelWebsocketsTransport(
        url=f"{WS_BASE}/services/ekko/v2/socket/websocket",
        headers={"Authorization": environ["MUNIC_AUTH"]},
    )
    async with Client(transport=transport) as session:
        count = 0
        async for result in session.subscribe(SUBSCRIPTION):
            print(result, flush=True)
            count += 1
            if args.max is not None and count >= args.max:
                break

asyncio.run(main())
