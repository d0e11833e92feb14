# settings replaces typed values, nested ones key by key.
{
  listen = "127.0.0.1:5000";
  maxBytes = "1T";
  upstreams."ghcr.io" = { url = "https://ghcr.io"; credentialsFile = "/run/secrets/ghcr.json"; };
  settings = {
    listen = "127.0.0.1:6000";
    max_bytes = 1000000;
    upstreams."ghcr.io".url = "https://ghcr.example.net";
  };
}
