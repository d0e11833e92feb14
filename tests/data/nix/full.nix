# Every option set; settings adds a key and overrides a typed one.
{
  listen = "0.0.0.0:5000";
  dataDir = "/var/lib/ccprewarm";
  upstreams = {
    "docker.io" = { url = "https://registry-1.docker.io"; };
    "ghcr.io" = { url = "https://ghcr.io"; credentialsFile = "/run/secrets/ghcr.json"; };
    "registry.example.org:5000" = {
      url = "https://registry.example.org:5000";
      credentialsFile = "/run/secrets/example.json";
      caFile = "/etc/ssl/example-ca.pem";
    };
  };
  maxBytes = "200G";
  minFree = "10%";
  tagFreshness = 600;
  platforms = [ "linux/amd64" "linux/arm64" ];
  recipesDir = "/var/lib/recipes";
  recipes = [ "lasuite-docs" { name = "n8n"; version = "1.2.0+2.23.4"; } "it's quoted" ];
  warm = { enable = true; dates = "hourly"; };
  dockerWarm = true;
  registerDockerMirror = true;
  containerdHosts = true;
  pinProtection = true;
  openFirewall = true;
  settings = {
    max_requests = 1000;
    log_level = "debug";
    tag_freshness_seconds = 900;
    upstreams."quay.io" = "https://quay.io";
  };
}
