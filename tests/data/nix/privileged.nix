# A port below 1024, a data directory outside /var/lib/ccprewarm, a size
# floor in bytes, no docker integration.
{
  listen = "[::]:443";
  dataDir = "/srv/ccprewarm";
  upstreams."docker.io".url = "https://mirror.gcr.io";
  maxBytes = 53687091200;
  minFree = "20G";
  registerDockerMirror = false;
  pinProtection = false;
}
