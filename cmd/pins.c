/*
 * cmd/pins.c: `ccprewarm docker-pins sync`: keeps the node's dockerd from
 * pruning images that enrolled recipes need.  An image used by a container
 * is never pruned, so for every pinned image dockerd holds there is one
 * never-started placeholder container labelled ccprewarm.pin=<recipe>;
 * `docker system prune -f --all --filter label!=ccprewarm.pin` then keeps
 * those containers and with them the images.  Placeholders of images no
 * longer pinned (or since re-tagged to another image) are removed.  With
 * nothing changed it is three Engine API calls and no writes.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../common/common.h"
#include "cmd.h"

#define PINS_API "http://localhost/v1.41"
#define PINS_LABEL "ccprewarm.pin"
#define PINS_LABEL_IMAGE "ccprewarm.image"
#define PINS_DEFAULT_SOCK "/var/run/docker.sock"

/* One pinned image found in dockerd: what its placeholder must carry. */
struct pins_want {
	const char *recipe;   /* borrowed from the recipes JSON */
	const char *ref;      /* canonical reference */
	const char *image_id; /* borrowed from the images JSON */
	int have;	      /* a placeholder already matches */
};

/* GET/POST/DELETE on dockerd; the JSON answer (new reference) or NULL. */
static json_t *
pins_docker(const char *sock, const char *method, const char *path,
    const char *body, long *status)
{
	struct client_reply rep;
	json_error_t jerr;
	json_t *j = NULL;
	char *url;

	xasprintf(&url, "%s%s", PINS_API, path);
	if (client_request_unix(sock, method, url, body, &rep) == -1) {
		log_error("docker-pins: cannot reach dockerd at '%s': %s", sock,
		    rep.error);
		free(url);
		return NULL;
	}
	*status = rep.status;
	if (rep.status >= 300)
		log_error("docker-pins: %s %s: dockerd answered %ld: %.300s",
		    method, path, rep.status, rep.body);
	else if (rep.body[0] != '\0' &&
	    (j = json_loads(rep.body, 0, &jerr)) == NULL)
		log_error(
		    "docker-pins: %s %s: the answer is not JSON", method, path);
	else if (j == NULL)
		j = json_object();
	free(rep.body);
	free(url);
	return j;
}

/* 1 if a docker name ("nginx:1.2", "ghcr.io/x/y@sha256:...") is ref. */
static int
pins_name_is(const char *name, const struct ref *want)
{
	struct ref r;
	const char *why;

	if (ref_parse(&r, name, &why) == -1)
		return 0;
	if (strcmp(r.host, want->host) != 0 || strcmp(r.repo, want->repo) != 0)
		return 0;
	if (want->has_digest)
		return r.has_digest && digest_equal(&r.digest, &want->digest);
	return !r.has_digest &&
	    strcmp(r.tag[0] ? r.tag : "latest",
		want->tag[0] ? want->tag : "latest") == 0;
}

/* The image ID dockerd holds for ref, or NULL. */
static const char *
pins_find_image(json_t *images, const char *canonical)
{
	json_t *im, *names, *n;
	struct ref want;
	const char *why;
	size_t i, k;

	if (ref_parse(&want, canonical, &why) == -1)
		return NULL;
	json_array_foreach(images, i, im) {
		names = json_object_get(
		    im, want.has_digest ? "RepoDigests" : "RepoTags");
		json_array_foreach(names, k, n) {
			if (json_is_string(n) &&
			    pins_name_is(json_string_value(n), &want))
				return json_string_value(
				    json_object_get(im, "Id"));
		}
	}
	return NULL;
}

static int
pins_sync(const char *sock, const char *server, int as_json)
{
	struct pins_want *want = NULL;
	struct client_reply rep;
	json_t *recipes = NULL, *images = NULL, *ctrs = NULL, *j, *img, *c;
	json_error_t jerr;
	size_t nwant = 0, i, k, created = 0, kept = 0, removed = 0;
	size_t missing = 0;
	char *url = NULL, *body, path[512];
	long status = 0;
	int rc = 1;

	xasprintf(&url, "%s/_ccprewarm/v1/recipes", server);
	if (client_request("GET", url, NULL, &rep) == -1) {
		log_error(
		    "docker-pins: cannot reach '%s': %s (is `ccprewarm serve` running? --server URL)",
		    server, rep.error);
		goto out;
	}
	recipes = rep.status == 200 ? json_loads(rep.body, 0, &jerr) : NULL;
	free(rep.body);
	if (!json_is_array(recipes)) {
		log_error("docker-pins: '%s' did not list its recipes", url);
		goto out;
	}
	if ((images = pins_docker(
		 sock, "GET", "/images/json", NULL, &status)) == NULL ||
	    (ctrs = pins_docker(sock, "GET",
		 "/containers/json?all=1&filters=%7B%22label%22%3A%5B%22"
		 "ccprewarm.pin%22%5D%7D",
		 NULL, &status)) == NULL)
		goto out;
	json_array_foreach(recipes, i, j) {
		json_array_foreach(json_object_get(j, "images"), k, img) {
			const char *ref =
			    json_string_value(json_object_get(img, "ref"));
			const char *id;

			if (ref == NULL)
				continue;
			if ((id = pins_find_image(images, ref)) == NULL) {
				missing++; /* only in the mirror: safe there */
				continue;
			}
			want = xreallocarray(want, nwant + 1, sizeof *want);
			want[nwant].recipe =
			    json_string_value(json_object_get(j, "recipe"));
			want[nwant].ref = ref;
			want[nwant].image_id = id;
			want[nwant].have = 0;
			nwant++;
		}
	}
	/* placeholders that still match stay; the others go */
	json_array_foreach(ctrs, i, c) {
		json_t *labels = json_object_get(c, "Labels");
		const char *recipe =
		    json_string_value(json_object_get(labels, PINS_LABEL));
		const char *ref = json_string_value(
		    json_object_get(labels, PINS_LABEL_IMAGE));
		const char *id =
		    json_string_value(json_object_get(c, "ImageID"));
		int keep = 0;

		for (k = 0; k < nwant && recipe && ref && id; k++)
			if (!want[k].have &&
			    strcmp(want[k].recipe, recipe) == 0 &&
			    strcmp(want[k].ref, ref) == 0 &&
			    strcmp(want[k].image_id, id) == 0) {
				want[k].have = keep = 1;
				break;
			}
		if (keep) {
			kept++;
			continue;
		}
		snprintf(path, sizeof path, "/containers/%s?v=1",
		    json_string_value(json_object_get(c, "Id")));
		json_decref(pins_docker(sock, "DELETE", path, NULL, &status));
		if (status >= 300)
			goto out;
		removed++;
	}
	for (k = 0; k < nwant; k++) {
		json_t *req;

		if (want[k].have)
			continue;
		req = json_pack("{s:s,s:[s],s:[s],s:{s:s,s:s},s:{s:s}}",
		    "Image", want[k].image_id, "Entrypoint", "/ccprewarm-pin",
		    "Cmd", "never started", "Labels", PINS_LABEL,
		    want[k].recipe, PINS_LABEL_IMAGE, want[k].ref, "HostConfig",
		    "NetworkMode", "none");
		body = json_dumps(req, JSON_COMPACT);
		json_decref(req);
		json_decref(pins_docker(
		    sock, "POST", "/containers/create", body, &status));
		free(body);
		if (status >= 300)
			goto out;
		created++;
	}
	if (as_json)
		printf("{\"created\":%zu,\"kept\":%zu,\"removed\":%zu,"
		       "\"not_in_docker\":%zu}\n",
		    created, kept, removed, missing);
	else
		printf("docker-pins: %zu placeholder%s created, %zu kept, %zu "
		       "removed; %zu pinned image%s not in dockerd\n",
		    created, created == 1 ? "" : "s", kept, removed, missing,
		    missing == 1 ? "" : "s");
	rc = 0;
out:
	free(want);
	json_decref(recipes);
	json_decref(images);
	json_decref(ctrs);
	free(url);
	return rc;
}

int
pins_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"docker", required_argument, NULL, 'd'},
	    {"server", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	const char *sock = PINS_DEFAULT_SOCK, *server = NULL;
	int as_json = 0, c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			sock = optarg;
			break;
		case 's':
			server = optarg;
			break;
		case 'j':
			as_json = 1;
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc - 1 || strcmp(argv[optind], "sync") != 0)
		goto usage;
	if (strncmp(sock, "unix://", 7) == 0)
		sock += 7;
	return pins_sync(
	    sock, server != NULL ? server : client_default_server(), as_json);
usage:
	fprintf(stderr,
	    "usage: ccprewarm docker-pins sync [--docker SOCKET] "
	    "[--server URL] [--json]\n");
	return 2;
}
