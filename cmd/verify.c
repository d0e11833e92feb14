/*
 * cmd/verify.c: `ccprewarm verify`: every stored file re-hashed against its
 * name, the index against the files, pin counts against the pins table,
 * tmp/ for leftovers.  Through a running server (its worker does the
 * reading; GET checks, POST repairs) or on a data directory no server
 * holds.  Exit status: 0 clean, 1 problems found (all repaired with
 * --repair), 2 problems left or the check failed.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../common/common.h"
#include "cmd.h"

/* Prints the answer; returns the exit status. */
static int
verify_print(const char *body, int as_json)
{
	json_t *root, *probs, *p;
	json_error_t jerr;
	json_int_t count, unrepaired;
	size_t i;
	int repair;

	if ((root = json_loads(body, 0, &jerr)) == NULL) {
		log_error("verify: cannot parse the answer: %s", jerr.text);
		return 2;
	}
	count = json_integer_value(json_object_get(root, "count"));
	unrepaired = json_integer_value(json_object_get(root, "unrepaired"));
	repair = json_is_true(json_object_get(root, "repair"));
	if (as_json)
		printf("%s\n", body);
	else {
		probs = json_object_get(root, "problems");
		json_array_foreach(probs, i, p) {
			const char *d =
			    json_string_value(json_object_get(p, "digest"));

			printf("%-8s %s%s\n",
			    json_string_value(json_object_get(p, "kind")),
			    d != NULL ? d : "(file)",
			    json_is_true(json_object_get(p, "repaired"))
				? " (repaired)"
				: "");
		}
		printf("%lld blobs, %lld files, %lld bytes hashed: %s\n",
		    (long long)json_integer_value(
			json_object_get(root, "blobs")),
		    (long long)json_integer_value(
			json_object_get(root, "files")),
		    (long long)json_integer_value(
			json_object_get(root, "hashed_bytes")),
		    count == 0 ? "clean"
			: repair && unrepaired == 0
			? "problems found and repaired"
			: "problems found");
	}
	json_decref(root);
	if (count == 0)
		return 0;
	return repair && unrepaired == 0 ? 1 : 2;
}

static int
verify_offline(const char *data, int repair, int as_json)
{
	struct verify_report rep;
	struct blobstore *bs = NULL;
	struct db *db = NULL;
	char *index = NULL, ds[DIGEST_STRLEN], *s;
	json_t *root, *arr, *o;
	size_t i, n;
	int failed = 0, rc = 2;

	memset(&rep, 0, sizeof rep);
	xasprintf(&index, "%s/index", data);
	if ((bs = blobstore_open_keep_tmp(data)) == NULL ||
	    (db = db_open(index)) == NULL)
		goto out;
	if (verify_scan(bs, db, VERIFY_REHASH, &rep) == -1)
		goto out;
	n = verify_count(&rep);
	if (repair && n > 0)
		failed = verify_repair(bs, db, 0, &rep);
	arr = json_array();
	for (i = 0; i < rep.n; i++) {
		const struct verify_problem *p = &rep.p[i];

		o = json_pack("{s:s,s:b}", "kind", verify_kind_name(p->kind),
		    "repaired", p->repaired);
		if (p->kind != VERIFY_STRAY && p->kind != VERIFY_TEMP) {
			digest_format(&p->digest, ds);
			json_object_set_new(o, "digest", json_string(ds));
		}
		if (p->path != NULL)
			json_object_set_new(o, "path", json_string(p->path));
		if (p->kind == VERIFY_PINS) {
			json_object_set_new(o, "pins", json_integer(p->have));
			json_object_set_new(o, "want", json_integer(p->want));
		}
		json_array_append_new(arr, o);
	}
	root = json_pack("{s:b,s:o,s:I,s:I,s:I,s:I,s:I}", "repair", repair,
	    "problems", arr, "count", (json_int_t)n, "unrepaired",
	    (json_int_t)(repair ? failed : (int)n), "blobs",
	    (json_int_t)rep.blobs, "files", (json_int_t)rep.files,
	    "hashed_bytes", (json_int_t)rep.hashed_bytes);
	s = json_dumps(root, JSON_COMPACT);
	rc = verify_print(s, as_json);
	free(s);
	json_decref(root);
out:
	verify_report_release(&rep);
	db_free(db);
	blobstore_free(bs);
	free(index);
	return rc;
}

int
verify_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"repair", no_argument, NULL, 'r'},
	    {"json", no_argument, NULL, 'j'},
	    {"server", required_argument, NULL, 's'},
	    {"data", required_argument, NULL, 'd'},
	    {NULL, 0, NULL, 0},
	};
	const char *server = NULL, *data = NULL;
	struct client_reply rep;
	char *url = NULL;
	int repair = 0, as_json = 0, c, rc = 2;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'r':
			repair = 1;
			break;
		case 'j':
			as_json = 1;
			break;
		case 's':
			server = optarg;
			break;
		case 'd':
			data = optarg;
			break;
		default:
			fprintf(stderr,
			    "usage: ccprewarm verify [--repair] "
			    "[--json] [--server URL | --data "
			    "DIR]\n");
			return 2;
		}
	}
	if (optind != argc || (server != NULL && data != NULL)) {
		log_error(
		    "verify: give --server URL or --data DIR, not both, and no other arguments");
		return 2;
	}
	if (data != NULL)
		return verify_offline(data, repair, as_json);
	xasprintf(&url, "%s/_ccprewarm/v1/verify",
	    server != NULL ? server : client_default_server());
	if (client_request(repair ? "POST" : "GET", url, repair ? "{}" : NULL,
		&rep) == -1) {
		log_error("verify: cannot reach the server at '%s': %s", url,
		    rep.error);
		goto out;
	}
	if (rep.status != 200)
		log_error("verify: the server answered %ld: %.300s", rep.status,
		    rep.body);
	else
		rc = verify_print(rep.body, as_json);
	free(rep.body);
out:
	free(url);
	return rc;
}
