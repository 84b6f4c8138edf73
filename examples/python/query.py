# The README's query example (getting-started guide, "GraphQL Query" in Python).
#   env: MUNIC_AUTH="Bearer <access_token>"; EKKO_BASE (default http://127.0.0.1:4000)
from os import environ
from gql import gql, Client
from gql.transport.requests import RequestsHTTPTransport

BASE = environ.get("EKKO_BASE", "http://127.0.0.1:4000")

transport = RequestsHTTPTransport(
    url=f"{BASE}/services/ekko/v2/graphql",
    headers={"Authorization": environ["MUNIC_AUTH"]},
)
client = Client(transport=transport, fetch_schema_from_transport=True)
print(client.execute(gql('query { account(id: "me") { full_name email } }')))
