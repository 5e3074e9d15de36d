"""The API's schema and Swagger UI page: served by us, usable offline, to logged-in users unless
API_DOCS_PUBLIC is on."""

from rest_framework.authtoken.models import Token


def test_swagger_ui_loads_its_assets_from_our_static_files(client, alice):
    client.force_login(alice)
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn." not in page


def test_schema_is_openapi_3(client, alice):
    client.force_login(alice)
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


def test_anonymous_visitors_get_neither_schema_nor_docs(client, db):
    response = client.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 401
    assert "openapi" not in response.content.decode()
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 302
    assert docs.url == "/login/?next=/api/v1/docs/"


def test_an_api_token_reads_the_schema(client, alice):
    key = Token.objects.create(user=alice).key
    response = client.get("/api/v1/schema/", {"format": "json"}, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


def test_api_docs_public_opens_both_to_anyone(client, db, settings):
    settings.API_DOCS_PUBLIC = True
    assert client.get("/api/v1/schema/", {"format": "json"}).json()["openapi"].startswith("3.")
    assert client.get("/api/v1/docs/").status_code == 200
