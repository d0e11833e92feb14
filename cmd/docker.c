/*
 * cmd/docker.c: `enroll --docker`: after a recipe is warm in the mirror,
 * pull its images into the local dockerd (Engine API over its unix
 * socket), so the node's layer store is warm too.  docker.io images are
 * pulled by name (dockerd's registry-mirrors sends them to the mirror);
 * images of other registries are pulled through the mirror's path prefix,
 * tagged with their original reference, and the prefixed name removed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/common.h"
#include "cmd.h"

#define DOCKER_API "http://localhost/v1.41"

/* "http://127.0.0.1:5000/" -> "127.0.0.1:5000" */
static void
docker_mirror_host(const char *server, char *out, size_t len)
{
	const char *p = strstr(server, "://");
	size_t n;

	p = p != NULL ? p + 3 : server;
	n = strcspn(p, "/");
	if (n >= len)
		n = len - 1;
	memcpy(out, p, n);
	out[n] = '\0';
}

/* Engine API calls answer 200 with a JSON progress stream; errors inside. */
static int
docker_call(
    const char *sock, const char *method, const char *path, const char *what)
{
	struct client_reply rep;
	char *url;
	int rc = -1;

	xasprintf(&url, "%s%s", DOCKER_API, path);
	if (client_request_unix(sock, method, url, NULL, &rep) == -1)
		log_error("docker: cannot reach dockerd at '%s': %s", sock,
		    rep.error);
	else if (rep.status >= 300 || strstr(rep.body, "\"error\"") != NULL)
		log_error("docker: %s failed (%ld): %.300s", what, rep.status,
		    rep.body);
	else
		rc = 0;
	free(rep.body);
	free(url);
	return rc;
}

int
docker_warm(const char *sock, const char *server, const char *canonical)
{
	char mirror[256], path[2048], from[1024], tag[160];
	struct ref ref;
	const char *why;

	if (ref_parse(&ref, canonical, &why) == -1) {
		log_error("docker: '%s': %s", canonical, why);
		return -1;
	}
	if (ref.has_digest)
		digest_format(&ref.digest, tag);
	else
		xstrlcpy(tag, ref.tag[0] ? ref.tag : "latest", sizeof tag);
	docker_mirror_host(server, mirror, sizeof mirror);
	if (strcmp(ref.host, "docker.io") == 0)
		snprintf(from, sizeof from, "docker.io/%s", ref.repo);
	else
		snprintf(
		    from, sizeof from, "%s/%s/%s", mirror, ref.host, ref.repo);
	snprintf(
	    path, sizeof path, "/images/create?fromImage=%s&tag=%s", from, tag);
	if (docker_call(sock, "POST", path, canonical) == -1)
		return -1;
	if (strcmp(ref.host, "docker.io") == 0 || ref.has_digest)
		return 0;
	/* the original name, so compose files find it */
	snprintf(path, sizeof path, "/images/%s:%s/tag?repo=%s/%s&tag=%s", from,
	    tag, ref.host, ref.repo, tag);
	if (docker_call(sock, "POST", path, canonical) == -1)
		return -1;
	/*
	 * Drop the mirror-prefixed name: only a name goes, not the image
	 * (it has the original name now), and no layer is pruned.
	 */
	snprintf(path, sizeof path, "/images/%s:%s?noprune=1", from, tag);
	return docker_call(sock, "DELETE", path, canonical);
}
