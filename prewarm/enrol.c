/*
 * prewarm/enrol.c: enrolled recipes and their versions.  A recipe record
 * says where its versions come from (for `warm`); each version is a job
 * (job.c) pinned for reasons (window, explicit, checkout).  Owns the admin
 * API (enroll, recipes, recipes/NAME[@VERSION], warm, settings), the
 * per-recipe metrics, start-up loading and resuming, and prewarm_new().
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "../common/common.h"
#include "internal.h"

/* Recipes ----------------------------------------------------------------- */

static struct job_recipe *
enrol_recipe_find(struct prewarm *pw, const char *name)
{
	struct job_recipe *rec;

	TAILQ_FOREACH(rec, &pw->recipes, entry)
		if (strcmp(rec->name, name) == 0)
			return rec;
	return NULL;
}

static struct job_recipe *
enrol_recipe_get(struct prewarm *pw, const char *name)
{
	struct job_recipe *rec;

	if ((rec = enrol_recipe_find(pw, name)) != NULL)
		return rec;
	rec = xcalloc(1, sizeof *rec);
	xstrlcpy(rec->name, name, sizeof rec->name);
	TAILQ_INSERT_TAIL(&pw->recipes, rec, entry);
	return rec;
}

static void
enrol_recipe_save(struct prewarm *pw, const struct job_recipe *rec)
{
	struct evbuffer *b = evbuffer_new();
	unsigned char hdr = JOB_RECORD_RECIPE;

	evbuffer_add(b, &hdr, 1);
	job_put_u64(b, (uint64_t)rec->window);
	job_put_u64(b, rec->flags);
	job_put_str(b, rec->source);
	job_put_str(b, rec->path);
	if (db_job_put(server_db(pw->srv), rec->name, evbuffer_pullup(b, -1),
		evbuffer_get_length(b)) == -1)
		log_warn("cannot record the enrolment of '%s'", rec->name);
	evbuffer_free(b);
}

/* Images ranked for a recipe's summary: the worst state of any version. */
static int
enrol_image_rank(const char *state)
{
	if (strcmp(state, "failed") == 0)
		return 2;
	return strcmp(state, "pending") == 0;
}

static void
enrol_image_merge(json_t *imgs, json_t *im)
{
	const char *ref = json_string_value(json_object_get(im, "ref"));
	const char *st = json_string_value(json_object_get(im, "state"));
	json_t *e;
	size_t i;

	json_array_foreach(imgs, i, e) {
		if (strcmp(json_string_value(json_object_get(e, "ref")), ref) !=
		    0)
			continue;
		if (enrol_image_rank(st) > enrol_image_rank(json_string_value(
					       json_object_get(e, "state"))))
			json_array_set(imgs, i, im);
		return;
	}
	json_array_append(imgs, im);
}

/*
 * A recipe: every version (newest first) and a summary over them: distinct
 * images (each in its worst state), distinct digests and their bytes (a
 * blob shared by two versions counts once), and a state that is running
 * while any version runs, failed if any failed, else warm.
 */
static json_t *
enrol_recipe_json(struct prewarm *pw, const struct job_recipe *rec)
{
	json_t *o, *versions = json_array(), *imgs = json_array(), *v, *im;
	const struct job *j, *first = NULL;
	struct digest *seen = NULL;
	size_t nseen = 0, cap = 0, i, k, done = 0;
	uint64_t bytes = 0, fetched = 0, present = 0;
	size_t blobs_total = 0, blobs_done = 0;
	int64_t started = 0, finished = 0;
	int nstate[4] = {0, 0, 0, 0};
	enum job_state st;

	TAILQ_FOREACH(j, &pw->jobs, entry) {
		if (strcmp(j->recipe, rec->name) != 0)
			continue;
		if (first == NULL)
			first = j;
		nstate[j->state]++;
		v = job_json(j);
		json_array_foreach(json_object_get(v, "images"), i, im)
			enrol_image_merge(imgs, im);
		json_array_append_new(versions, v);
		for (i = 0; i < j->nclosure; i++) {
			for (k = 0; k < nseen; k++)
				if (digest_equal(&seen[k], &j->closure[i]))
					break;
			if (k < nseen)
				continue;
			if (nseen == cap) {
				cap = cap ? 2 * cap : 64;
				seen = xreallocarray(seen, cap, sizeof *seen);
			}
			seen[nseen++] = j->closure[i];
			if (j->closure_size[i] > 0)
				bytes += (uint64_t)j->closure_size[i];
		}
		fetched += j->bytes_fetched;
		present += j->bytes_present;
		blobs_total += j->blobs_total;
		blobs_done += j->blobs_done;
		if (started == 0 || (j->started_at && j->started_at < started))
			started = j->started_at;
		if (j->finished_at > finished)
			finished = j->finished_at;
	}
	free(seen);
	json_array_foreach(imgs, i, im)
		done += strcmp(json_string_value(json_object_get(im, "state")),
			    "warm") == 0;
	st = nstate[JOB_RUNNING] ? JOB_RUNNING
	    : nstate[JOB_QUEUED] ? JOB_QUEUED
	    : nstate[JOB_FAILED] ? JOB_FAILED
				 : JOB_DONE;
	o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
		      "s:o,s:I,s:s,s:s,s:I,s:o}",
	    "recipe", rec->name, "version", first ? first->version : "",
	    "state", job_state_names[st], "images_total",
	    (json_int_t)json_array_size(imgs), "images_done", (json_int_t)done,
	    "blobs_total", (json_int_t)blobs_total, "blobs_done",
	    (json_int_t)blobs_done, "bytes_total", (json_int_t)bytes,
	    "bytes_fetched", (json_int_t)fetched, "bytes_present",
	    (json_int_t)present, "digests", (json_int_t)nseen, "started_at",
	    (json_int_t)started, "finished_at", (json_int_t)finished, "images",
	    imgs, "window", (json_int_t)rec->window, "source", rec->source,
	    "path", rec->path, "flags", (json_int_t)rec->flags, "versions",
	    versions);
	if (o == NULL)
		fatal("out of memory building recipe status");
	json_object_set_new(
	    o, "platforms", first ? job_platforms_json(first) : json_array());
	return o;
}

static void
enrol_reply(struct req *r, int status, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);

	if (s == NULL)
		fatal("out of memory serialising job status");
	req_reply_mem(r, status, "application/json", NULL, s, strlen(s));
	free(s);
	json_decref(o);
}

/* A version no reason pins any more: unpinned (its blobs stay, evictable
 * under the budget) and forgotten. */
static int
enrol_drop(struct prewarm *pw, struct job *j)
{
	char id[300];
	int rc = 0;

	TAILQ_REMOVE(&pw->jobs, j, entry);
	job_id(j, id, sizeof id);
	if (db_pins_unset(server_db(pw->srv), j->recipe, j->version) == -1 ||
	    db_job_del(server_db(pw->srv), id) == -1)
		rc = -1;
	log_info(
	    "pre-warm '%s' %s: unpinned, no reason left to keep it; its blobs stay until evicted",
	    j->recipe, j->version);
	job_free(j);
	return rc;
}

/* Admin API -----------------------------------------------------------------
 */

static int
enrol_valid_recipe(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n < 128 && s[0] != '.' && s[0] != '-' &&
	    strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

static int
enrol_valid_version(const char *s)
{
	const unsigned char *p;

	if (strlen(s) >= sizeof(((struct job *)0)->version))
		return 0;
	for (p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p <= ' ' || *p == 0x7f)
			return 0;
	return 1;
}

/* "sha256:<hex>" or a hex prefix of at least 8 digits. */
static int
enrol_valid_want(const char *s)
{
	size_t n;

	if (strncmp(s, "sha256:", 7) == 0)
		s += 7;
	n = strlen(s);
	return n >= 8 && n <= 64 && strspn(s, "0123456789abcdef") == n;
}

static unsigned
enrol_reason_parse(const char *s)
{
	size_t i;

	for (i = 0; s != NULL && i < nitems(job_reason_names); i++)
		if (strcmp(s, job_reason_names[i]) == 0)
			return 1u << i;
	return 0;
}

/* One version of an enroll request, checked before anything changes. */
struct enrol_ver {
	const char *version;
	unsigned reason;
	struct job_want *w;
	size_t n;
};

static int
enrol_parse_version(json_t *v, struct enrol_ver *ev, char *msg, size_t len)
{
	json_t *images = NULL, *im;
	const char *s, *want, *svc, *why, *reason = NULL;
	json_error_t err;
	struct ref ref;
	size_t i;

	/* strict: a key this does not know is refused, not ignored */
	ev->version = NULL;
	if (json_unpack_ex(v, &err, 0, "{s:s,s:s,s?o!}", "version",
		&ev->version, "reason", &reason, "images", &images) == -1) {
		if (json_error_code(&err) == json_error_end_of_input_expected) {
			snprintf(
			    msg, len, "invalid version entry: %s", err.text);
			return -1;
		}
		ev->version = reason = NULL; /* refused below */
	}
	ev->reason = enrol_reason_parse(reason);
	if (ev->version == NULL || !enrol_valid_version(ev->version) ||
	    ev->reason == 0) {
		snprintf(msg, len,
		    "each version needs {\"version\": V, \"reason\": \"window\"|\"explicit\"|\"checkout\", \"images\": [...]}");
		return -1;
	}
	if (!json_is_array(images) || json_array_size(images) == 0 ||
	    json_array_size(images) > JOB_MAX_IMAGES) {
		snprintf(msg, len, "version '%.128s' needs 1 to %d images",
		    ev->version, JOB_MAX_IMAGES);
		return -1;
	}
	ev->w = xcalloc(json_array_size(images), sizeof *ev->w);
	json_array_foreach(images, i, im) {
		s = want = svc = NULL;
		if (json_is_object(im)) {
			if (json_unpack_ex(im, &err, 0, "{s?s,s?s,s?s!}", "ref",
				&s, "digest", &want, "service", &svc) == -1) {
				if (json_error_code(&err) ==
				    json_error_end_of_input_expected) {
					snprintf(msg, len,
					    "invalid image entry: %s",
					    err.text);
					return -1;
				}
				/* a value of the wrong type: as if absent */
				s = json_string_value(
				    json_object_get(im, "ref"));
				want = json_string_value(
				    json_object_get(im, "digest"));
				svc = json_string_value(
				    json_object_get(im, "service"));
			}
		} else
			s = json_string_value(im);
		if (s == NULL || ref_parse(&ref, s, &why) == -1) {
			snprintf(msg, len,
			    "invalid image reference '%.200s': %s",
			    s != NULL ? s : "(not a string)",
			    s != NULL ? why : "");
			return -1;
		}
		if (want != NULL && !enrol_valid_want(want)) {
			snprintf(msg, len,
			    "invalid digest '%.80s' for '%.200s': want sha256:<hex> or at least 8 hex digits",
			    want, s);
			return -1;
		}
		ref_format(&ref, ev->w[i].ref, sizeof ev->w[i].ref);
		xstrlcpy(ev->w[i].want,
		    want == NULL			   ? ""
			: strncmp(want, "sha256:", 7) == 0 ? want + 7
							   : want,
		    sizeof ev->w[i].want);
		xstrlcpy(ev->w[i].service, svc != NULL ? svc : "",
		    sizeof ev->w[i].service);
		ev->n++;
	}
	return 0;
}

/*
 * POST enroll {"recipe", "versions": [{"version", "reason", "images":
 * [REF | {"ref", "digest", "service"}]}], "replace": REASON, "window": N,
 * "source", "path", "flags", "platforms", "rewarm": bool}.  The versions
 * sent are (re)started and gain their reason; with "replace" ("window"
 * or "checkout"), the recipe's chosen set is replaced: versions not sent
 * lose their window and checkout reasons (the window moved, or the recipe
 * now comes from tags), explicit pins stay; "rewarm" restarts the
 * recipe's other versions too.  A version left with no reason is
 * unpinned.  The first form {"recipe", "version", "images"} is one
 * checkout version.  The reply is the recipe's status plus "added" and
 * "unpinned" versions.
 */
static void
enrol_admin_enroll(struct req *r, void *arg)
{
	struct prewarm *pw = arg;
	struct enrol_ver ev[JOB_MAX_VERSIONS];
	json_t *root, *vers, *v, *added, *unpinned, *o, *legacy = NULL;
	const char *body, *recipe, *s;
	struct job_recipe *rec;
	struct job *j, *next;
	unsigned replace = 0;
	/* the versions chosen for the recipe (its window, or its checkout)
	 * are replaced as a whole: a window enrolment retires a checkout */
	const unsigned auto_reasons = JOB_PIN_WINDOW | JOB_PIN_CHECKOUT;
	size_t nev = 0, i, k;
	char msg[400];
	int rewarm, sent;

	memset(ev, 0, sizeof ev);
	msg[0] = '\0';
	body = req_body(r, NULL);
	root = body != NULL ? json_loads(body, 0, NULL) : NULL;
	recipe = json_string_value(json_object_get(root, "recipe"));
	vers = json_object_get(root, "versions");
	if (vers == NULL && json_object_get(root, "images") != NULL) {
		s = json_string_value(json_object_get(root, "version"));
		legacy = json_pack("[{s:s,s:s,s:O}]", "version", s ? s : "",
		    "reason", "checkout", "images",
		    json_object_get(root, "images"));
		vers = legacy;
		replace = JOB_PIN_CHECKOUT;
	}
	if (recipe == NULL || !enrol_valid_recipe(recipe) ||
	    !json_is_array(vers) || json_array_size(vers) > JOB_MAX_VERSIONS) {
		snprintf(msg, sizeof msg,
		    "enroll needs {\"recipe\": NAME, \"versions\": [up to %d {\"version\", \"reason\", \"images\": [REF, ...]}]}",
		    JOB_MAX_VERSIONS);
		goto bad;
	}
	json_array_foreach(vers, i, v) {
		if (enrol_parse_version(v, &ev[nev++], msg, sizeof msg) == -1)
			goto bad;
		for (k = 0; k + 1 < nev; k++)
			if (strcmp(ev[k].version, ev[nev - 1].version) == 0) {
				snprintf(msg, sizeof msg,
				    "version '%.128s' is listed twice",
				    ev[k].version);
				goto bad;
			}
	}
	if ((s = json_string_value(json_object_get(root, "replace"))) != NULL) {
		replace = enrol_reason_parse(s);
		if (replace != JOB_PIN_WINDOW && replace != JOB_PIN_CHECKOUT) {
			snprintf(msg, sizeof msg,
			    "replace must be \"window\" or \"checkout\"");
			goto bad;
		}
	}
	if ((v = json_object_get(root, "window")) != NULL &&
	    (!json_is_integer(v) || json_integer_value(v) < 0 ||
		json_integer_value(v) > JOB_MAX_VERSIONS)) {
		snprintf(msg, sizeof msg, "window must be 0 to %d",
		    JOB_MAX_VERSIONS);
		goto bad;
	}
	rewarm = json_is_true(json_object_get(root, "rewarm"));

	/* Everything checked: apply. */
	rec = enrol_recipe_get(pw, recipe);
	if (json_is_integer(v))
		rec->window = json_integer_value(v);
	/* Where warm reads the recipe again: what its window (or checkout)
	 * came from; an explicit --version from elsewhere does not move it. */
	if (replace != 0 || rec->source[0] == '\0') {
		if ((s = json_string_value(json_object_get(root, "source"))) !=
		    NULL)
			xstrlcpy(rec->source, s, sizeof rec->source);
		if ((s = json_string_value(json_object_get(root, "path"))) !=
		    NULL)
			xstrlcpy(rec->path, s, sizeof rec->path);
		if (json_is_integer(json_object_get(root, "flags")))
			rec->flags = (uint64_t)json_integer_value(
			    json_object_get(root, "flags"));
	}
	enrol_recipe_save(pw, rec);
	added = json_array();
	unpinned = json_array();
	for (i = 0; i < nev; i++) {
		if ((j = job_find(pw, recipe, ev[i].version)) == NULL) {
			j = job_new(pw, recipe, ev[i].version);
			json_array_append_new(added, json_string(j->version));
			job_set_platforms(
			    j, json_object_get(root, "platforms"));
		} else if (json_object_get(root, "platforms") != NULL)
			job_set_platforms(
			    j, json_object_get(root, "platforms"));
		if (replace != 0)
			j->reasons &= ~(unsigned)auto_reasons;
		j->reasons |= ev[i].reason;
		if (j->state == JOB_RUNNING) {
			job_save(j);
			continue;
		}
		job_set_images(j, ev[i].w, ev[i].n);
		job_start(j);
	}
	for (j = TAILQ_FIRST(&pw->jobs); j != NULL; j = next) {
		next = TAILQ_NEXT(j, entry);
		if (strcmp(j->recipe, recipe) != 0)
			continue;
		for (sent = 0, i = 0; i < nev && !sent; i++)
			sent = strcmp(ev[i].version, j->version) == 0;
		if (sent)
			continue;
		if (replace != 0 && (j->reasons & auto_reasons)) {
			j->reasons &= ~(unsigned)auto_reasons;
			if (j->reasons == 0) {
				json_array_append_new(
				    unpinned, json_string(j->version));
				enrol_drop(pw, j);
				continue;
			}
			job_save(j);
		}
		if (rewarm && j->state != JOB_RUNNING)
			job_start(j);
	}
	o = enrol_recipe_json(pw, rec);
	json_object_set_new(o, "added", added);
	json_object_set_new(o, "unpinned", unpinned);
	enrol_reply(r, 202, o);
	goto out;
bad:
	req_error(r, OCI_ERR_NAME_INVALID, msg);
out:
	for (i = 0; i < nev; i++)
		free(ev[i].w);
	json_decref(legacy);
	json_decref(root);
}

/*
 * DELETE recipes/NAME@VERSION: that version loses its explicit (and
 * checkout) pin; pinned by the window still, it stays.  The reply is the
 * recipe's status plus "unpinned".
 */
static void
enrol_admin_unenroll_version(struct req *r, struct prewarm *pw, const char *arg)
{
	char recipe[128];
	const char *version = strchr(arg, '@') + 1;
	struct job_recipe *rec;
	json_t *o, *unpinned = json_array();
	struct job *j;

	snprintf(recipe, sizeof recipe, "%.*s", (int)(version - 1 - arg), arg);
	if ((rec = enrol_recipe_find(pw, recipe)) == NULL ||
	    (j = job_find(pw, recipe, version)) == NULL) {
		json_decref(unpinned);
		req_error(r, OCI_ERR_NAME_UNKNOWN, "version is not enrolled");
		return;
	}
	j->reasons &= ~(unsigned)(JOB_PIN_EXPLICIT | JOB_PIN_CHECKOUT);
	if (j->reasons == 0) {
		json_array_append_new(unpinned, json_string(j->version));
		enrol_drop(pw, j);
	} else
		job_save(j);
	o = enrol_recipe_json(pw, rec);
	json_object_set_new(o, "unpinned", unpinned);
	enrol_reply(r, 200, o);
}

static void
enrol_admin_unenroll(struct req *r, void *arg)
{
	struct prewarm *pw = arg;
	const char *recipe = req_admin_arg(r);
	struct job_recipe *rec;
	struct job *j, *next;
	char id[300];
	int rc = 0;

	if (strchr(recipe, '@') != NULL) {
		enrol_admin_unenroll_version(r, pw, recipe);
		return;
	}
	if ((rec = enrol_recipe_find(pw, recipe)) == NULL) {
		req_error(r, OCI_ERR_NAME_UNKNOWN, "recipe is not enrolled");
		return;
	}
	for (j = TAILQ_FIRST(&pw->jobs); j != NULL; j = next) {
		next = TAILQ_NEXT(j, entry);
		if (strcmp(j->recipe, recipe) != 0)
			continue;
		TAILQ_REMOVE(&pw->jobs, j, entry);
		job_id(j, id, sizeof id);
		if (db_job_del(server_db(pw->srv), id) == -1)
			rc = -1;
		job_free(j);
	}
	TAILQ_REMOVE(&pw->recipes, rec, entry);
	if (db_job_del(server_db(pw->srv), rec->name) == -1 ||
	    db_pins_del(server_db(pw->srv), rec->name) == -1)
		rc = -1;
	log_info("pre-warm '%s': unenrolled; its pins are released", rec->name);
	free(rec);
	if (rc == -1) {
		req_error(r, OCI_ERR_INTERNAL, "cannot remove the enrolment");
		return;
	}
	req_reply_mem(r, 200, "application/json", NULL, "{}", 2);
}

static void
enrol_admin_status(struct req *r, void *arg)
{
	struct prewarm *pw = arg;
	struct job_recipe *rec;
	json_t *o;

	if ((rec = enrol_recipe_find(pw, req_admin_arg(r))) == NULL) {
		req_error(r, OCI_ERR_NAME_UNKNOWN, "recipe is not enrolled");
		return;
	}
	o = enrol_recipe_json(pw, rec);
	/* the store cannot hold every pin within its budget (all kept) */
	json_object_set_new(
	    o, "pins_over_budget", json_boolean(evict_pins_over(pw->srv)));
	enrol_reply(r, 200, o);
}

static void
enrol_admin_list(struct req *r, void *arg)
{
	struct prewarm *pw = arg;
	json_t *a = json_array();
	struct job_recipe *rec;

	TAILQ_FOREACH(rec, &pw->recipes, entry)
		json_array_append_new(a, enrol_recipe_json(pw, rec));
	enrol_reply(r, 200, a);
}

/* GET settings: what the CLI needs to choose versions the daemon's way. */
static void
enrol_admin_settings(struct req *r, void *arg)
{
	struct prewarm *pw = arg;
	json_t *plats = json_array();
	size_t i;

	for (i = 0; i < pw->nplatforms; i++)
		json_array_append_new(plats, json_string(pw->platforms[i]));
	enrol_reply(r, 200,
	    json_pack("{s:I,s:o}", "recipe_versions", (json_int_t)pw->window,
		"platforms", plats));
}

/* POST warm: re-resolve every enrolled version and fetch what is new. */
static void
enrol_admin_warm(struct req *r, void *arg)
{
	struct prewarm *pw = arg;
	json_t *a = json_array();
	struct job_recipe *rec;
	struct job *j;

	TAILQ_FOREACH(j, &pw->jobs, entry)
		if (j->state != JOB_RUNNING)
			job_start(j);
	TAILQ_FOREACH(rec, &pw->recipes, entry)
		json_array_append_new(a, enrol_recipe_json(pw, rec));
	enrol_reply(r, 202, a);
}

static void
enrol_metrics(struct evbuffer *b, void *arg)
{
	struct prewarm *pw = arg;
	static const char *const vstates[] = {"warm", "pending", "failed"};
	struct job_recipe *rec;
	json_t *o, *e;
	const char *st;
	size_t i, c[3], vc[3];

	evbuffer_add_printf(b,
	    "# HELP ccprewarm_recipe_images Images of "
	    "enrolled recipes by state.\n# TYPE ccprewarm_recipe_images "
	    "gauge\n");
	TAILQ_FOREACH(rec, &pw->recipes, entry) {
		o = enrol_recipe_json(pw, rec);
		memset(c, 0, sizeof c);
		json_array_foreach(json_object_get(o, "images"), i, e) {
			st = json_string_value(json_object_get(e, "state"));
			c[enrol_image_rank(st) == 2	    ? 2
				: enrol_image_rank(st) == 1 ? 0
							    : 1]++;
		}
		for (i = 0; i < 3; i++)
			evbuffer_add_printf(b,
			    "ccprewarm_recipe_images{recipe="
			    "\"%s\",state=\"%s\"} %zu\n",
			    rec->name, job_image_state_names[i], c[i]);
		json_decref(o);
	}
	evbuffer_add_printf(b,
	    "# HELP ccprewarm_recipe_versions Enrolled versions of recipes "
	    "by state (pending: queued or running).\n# TYPE "
	    "ccprewarm_recipe_versions gauge\n");
	TAILQ_FOREACH(rec, &pw->recipes, entry) {
		const struct job *j;

		memset(vc, 0, sizeof vc);
		TAILQ_FOREACH(j, &pw->jobs, entry)
			if (strcmp(j->recipe, rec->name) == 0)
				vc[j->state == JOB_DONE		 ? 0
					: j->state == JOB_FAILED ? 2
								 : 1]++;
		for (i = 0; i < 3; i++)
			evbuffer_add_printf(b,
			    "ccprewarm_recipe_versions{recipe="
			    "\"%s\",state=\"%s\"} %zu\n",
			    rec->name, vstates[i], vc[i]);
	}
}

/* Start-up -------------------------------------------------------------- */

static void
enrol_load_recipe(struct prewarm *pw, const char *id, struct job_rd *rd)
{
	struct job_recipe *rec = enrol_recipe_get(pw, id);

	rec->window = (int64_t)job_get_u64(rd);
	rec->flags = job_get_u64(rd);
	job_get_str(rd, rec->source, sizeof rec->source);
	job_get_str(rd, rec->path, sizeof rec->path);
	if (rd->bad)
		log_warn("enrolment record '%s' is damaged; re-enroll it", id);
}

static void
enrol_load_cb(void *arg, const char *id, const void *val, size_t len)
{
	struct prewarm *pw = arg;
	struct job_rd rd = {val, len, 0, 0};

	if (len >= 1 && rd.p[0] == JOB_RECORD_RECIPE) {
		rd.off = 1;
		enrol_load_recipe(pw, id, &rd);
		return;
	}
	job_load(pw, id, val, len);
}

/* Jobs that were running when the daemon stopped carry on. */
static void
enrol_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct prewarm *pw = arg;
	struct job *j;

	(void)fd;
	(void)what;
	TAILQ_FOREACH(j, &pw->jobs, entry) {
		if (j->state == JOB_RUNNING || j->state == JOB_QUEUED) {
			log_info(
			    "pre-warm '%s'%s%s: resuming an interrupted job",
			    j->recipe, j->version[0] ? " " : "", j->version);
			job_start(j);
		}
	}
}

struct prewarm *
prewarm_new(struct server *srv, const char *const *platforms, size_t n)
{
	struct prewarm *pw = xcalloc(1, sizeof *pw);
	struct job_recipe *rec;
	struct job *j;
	size_t i;

	pw->srv = srv;
	pw->window = JOB_DEFAULT_WINDOW;
	TAILQ_INIT(&pw->jobs);
	TAILQ_INIT(&pw->recipes);
	for (i = 0; i < n && i < nitems(pw->platforms); i++)
		xstrlcpy(
		    pw->platforms[i], platforms[i], sizeof pw->platforms[i]);
	pw->nplatforms = i;
	if (pw->nplatforms == 0)
		job_native_platform(
		    pw->platforms[pw->nplatforms++], sizeof pw->platforms[0]);
	if (db_job_list(server_db(srv), enrol_load_cb, pw) == -1) {
		prewarm_free(pw);
		return NULL;
	}
	/* every version has its recipe (older stores had none) */
	TAILQ_FOREACH(j, &pw->jobs, entry) {
		if (enrol_recipe_find(pw, j->recipe) != NULL)
			continue;
		rec = enrol_recipe_get(pw, j->recipe);
		xstrlcpy(rec->source, "dir", sizeof rec->source);
		enrol_recipe_save(pw, rec);
	}
	admin_add(srv, "enroll", REQ_POST, enrol_admin_enroll, pw);
	admin_add(srv, "recipes", REQ_GET, enrol_admin_list, pw);
	admin_add(srv, "recipes/", REQ_GET, enrol_admin_status, pw);
	admin_add(srv, "recipes/", REQ_DELETE, enrol_admin_unenroll, pw);
	admin_add(srv, "warm", REQ_POST, enrol_admin_warm, pw);
	admin_add(srv, "settings", REQ_GET, enrol_admin_settings, pw);
	metrics_add(srv, enrol_metrics, pw);
	if ((pw->resume_ev =
		    evtimer_new(server_base(srv), enrol_resume_cb, pw)) == NULL)
		fatal("out of memory creating the resume timer");
	event_active(pw->resume_ev, EV_TIMEOUT, 0);
	return pw;
}

void
prewarm_set_versions(struct prewarm *pw, int64_t n)
{
	pw->window = n;
}

void
prewarm_free(struct prewarm *pw)
{
	struct job_recipe *rec;
	struct job *j;

	if (pw == NULL)
		return;
	while ((j = TAILQ_FIRST(&pw->jobs)) != NULL) {
		TAILQ_REMOVE(&pw->jobs, j, entry);
		job_free(j);
	}
	while ((rec = TAILQ_FIRST(&pw->recipes)) != NULL) {
		TAILQ_REMOVE(&pw->recipes, rec, entry);
		free(rec);
	}
	if (pw->resume_ev != NULL)
		event_free(pw->resume_ev);
	free(pw);
}
