/*
 * prewarm/recipe.c: a Co-op Cloud recipe (compose.yml, compose.*.yml
 * overlays, .env.sample) -> the distinct, normalised images it deploys, each
 * with the file:line:service places that use it.  Owns the libyaml calls,
 * the .env.sample reader, compose's ${VAR} interpolation, and the git
 * reader that loads a recipe at a tag without touching the working tree.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <poll.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "../common/common.h"
#include "prewarm.h"

#define RECIPE_ENV_FILE ".env.sample"
#define RECIPE_MAIN_FILE "compose.yml"
#define RECIPE_OVERLAY_GLOB "compose*.yml"
#define RECIPE_FILE_MAX (1024 * 1024) /* compose files are a few KiB */
#define RECIPE_INTERP_MAX 4096	      /* one interpolated image string */
#define RECIPE_INTERP_DEPTH 8	      /* ${A:-${B:-${C}}} nesting */
#define RECIPE_MERGE_DEPTH 4	      /* <<: *x chains */
#define RECIPE_MERGE_BUDGET 4096      /* merge nodes visited per file */
#define RECIPE_VERSION_LABEL "coop-cloud.${STACK_NAME}.version"

struct recipe_var {
	char *name;
	char *value;
};

struct recipe_use_list {
	struct recipe_use *v;
	size_t n, cap;
};

struct recipe {
	enum recipe_flags flags;
	struct recipe_var *vars; /* from .env.sample, last wins */
	size_t nvars;
	size_t compose_line; /* .env.sample line of COMPOSE_FILE */
	char **files;	     /* compose files to read, in order */
	size_t nfiles;
	struct recipe_image *images;
	struct recipe_use_list *uses; /* parallel to images */
	size_t nimages, capimages;
	char *version;
	char **pool; /* owned strings the uses point to */
	size_t npool;
	size_t merge_budget; /* per file */
	char *err;	     /* the caller's buffer */
	size_t errlen;
};

/* A growing string for interpolation. */
struct recipe_buf {
	char *p;
	size_t len, cap;
};

static void recipe_err(struct recipe *, const char *file, size_t line,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
recipe_err(
    struct recipe *r, const char *file, size_t line, const char *fmt, ...)
{
	char msg[512];
	unsigned char *p;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (r->errlen == 0)
		return;
	/* One line, whatever the file held (a "\n" inside an image). */
	for (p = (unsigned char *)msg; *p != '\0'; p++)
		if (*p < ' ' || *p == 0x7f)
			*p = '?';
	if (file != NULL && line > 0)
		snprintf(r->err, r->errlen, "%s:%zu: %s", file, line, msg);
	else if (file != NULL)
		snprintf(r->err, r->errlen, "%s: %s", file, msg);
	else
		snprintf(r->err, r->errlen, "%s", msg);
}

static const char *
recipe_intern(struct recipe *r, const char *s)
{
	r->pool = xreallocarray(r->pool, r->npool + 1, sizeof(*r->pool));
	r->pool[r->npool] = xstrdup(s);
	return r->pool[r->npool++];
}

static struct recipe *
recipe_new(enum recipe_flags flags, char *err, size_t errlen)
{
	struct recipe *r;

	r = xcalloc(1, sizeof(*r));
	r->flags = flags;
	r->err = err;
	r->errlen = errlen;
	if (errlen > 0)
		err[0] = '\0';
	return r;
}

void
recipe_free(struct recipe *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->nvars; i++) {
		free(r->vars[i].name);
		free(r->vars[i].value);
	}
	free(r->vars);
	for (i = 0; i < r->nfiles; i++)
		free(r->files[i]);
	free(r->files);
	for (i = 0; i < r->nimages; i++)
		free(r->uses[i].v);
	free(r->uses);
	free(r->images);
	for (i = 0; i < r->npool; i++)
		free(r->pool[i]);
	free(r->pool);
	free(r->version);
	free(r);
}

size_t
recipe_nimages(const struct recipe *r)
{
	return r->nimages;
}

const struct recipe_image *
recipe_image(const struct recipe *r, size_t i)
{
	return i < r->nimages ? &r->images[i] : NULL;
}

size_t
recipe_nfiles(const struct recipe *r)
{
	return r->nfiles;
}

const char *
recipe_file(const struct recipe *r, size_t i)
{
	return i < r->nfiles ? r->files[i] : NULL;
}

const char *
recipe_version(const struct recipe *r)
{
	return r->version;
}

/* Variables and interpolation --------------------------------------------- */

static const char *
recipe_var_get(const struct recipe *r, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < r->nvars; i++)
		if (strlen(r->vars[i].name) == len &&
		    memcmp(r->vars[i].name, name, len) == 0)
			return r->vars[i].value;
	return NULL;
}

static void
recipe_var_set(
    struct recipe *r, const char *name, size_t len, const char *value)
{
	size_t i;

	for (i = 0; i < r->nvars; i++) {
		if (strlen(r->vars[i].name) == len &&
		    memcmp(r->vars[i].name, name, len) == 0) {
			free(r->vars[i].value);
			r->vars[i].value = xstrdup(value);
			return;
		}
	}
	r->vars = xreallocarray(r->vars, r->nvars + 1, sizeof(*r->vars));
	r->vars[r->nvars].name = xstrndup(name, len);
	r->vars[r->nvars].value = xstrdup(value);
	r->nvars++;
}

static int
recipe_buf_add(struct recipe_buf *b, const char *s, size_t len)
{
	if (b->len + len > RECIPE_INTERP_MAX)
		return -1;
	if (b->len + len + 1 > b->cap) {
		b->cap = b->len + len + 1 + 64;
		b->p = xreallocarray(b->p, b->cap, 1);
	}
	memcpy(b->p + b->len, s, len);
	b->len += len;
	b->p[b->len] = '\0';
	return 0;
}

static int
recipe_is_name_start(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int
recipe_is_name(int c)
{
	return recipe_is_name_start(c) || (c >= '0' && c <= '9');
}

/*
 * compose-spec interpolation of s[0..len): "$$" is a '$'; "$VAR" and
 * "${VAR}" substitute; "${VAR:-w}"/"${VAR-w}" default when unset or empty /
 * unset; "${VAR:?w}"/"${VAR?w}" fail; "${VAR:+w}"/"${VAR+w}" replace when
 * set.  w is interpolated itself.  strict: a variable that is unset with no
 * default is an error (images); otherwise it is empty (.env.sample, where
 * COMPOSE_FILE="$COMPOSE_FILE:x" starts unset).  0, or -1 with why.
 */
static int
recipe_interp(const struct recipe *r, const char *s, size_t len, int strict,
    int depth, struct recipe_buf *out, char *why, size_t whylen)
{
	const char *name, *val, *word;
	size_t i = 0, namelen, wordlen, nest;
	char op[3];

	if (depth > RECIPE_INTERP_DEPTH) {
		snprintf(why, whylen, "interpolation nested too deeply");
		return -1;
	}
	while (i < len) {
		if (s[i] != '$') {
			for (wordlen = 0;
			     i + wordlen < len && s[i + wordlen] != '$';)
				wordlen++;
			if (recipe_buf_add(out, s + i, wordlen) == -1)
				goto toolong;
			i += wordlen;
			continue;
		}
		i++;
		if (i < len && s[i] == '$') {
			if (recipe_buf_add(out, "$", 1) == -1)
				goto toolong;
			i++;
			continue;
		}
		op[0] = '\0';
		word = NULL;
		wordlen = 0;
		if (i < len && s[i] == '{') {
			i++;
			name = s + i;
			if (i >= len ||
			    !recipe_is_name_start((unsigned char)s[i]))
				goto invalid;
			while (i < len && recipe_is_name((unsigned char)s[i]))
				i++;
			namelen = s + i - name;
			if (i + 1 < len && s[i] == ':' && s[i + 1] != '\0' &&
			    strchr("-?+", s[i + 1]) != NULL) {
				op[0] = ':';
				op[1] = s[i + 1];
				op[2] = '\0';
				i += 2;
			} else if (i < len && s[i] != '\0' &&
			    strchr("-?+", s[i]) != NULL) {
				op[0] = s[i];
				op[1] = '\0';
				i++;
			}
			if (op[0] != '\0') {
				/* The word runs to the matching '}'. */
				word = s + i;
				for (nest = 0; i < len; i++) {
					if (s[i] == '$' && i + 1 < len &&
					    s[i + 1] == '$') {
						i++; /* "$$": not a "${" */
					} else if (s[i] == '$' && i + 1 < len &&
					    s[i + 1] == '{') {
						nest++;
						i++;
					} else if (s[i] == '}') {
						if (nest == 0)
							break;
						nest--;
					}
				}
				wordlen = s + i - word;
			}
			if (i >= len || s[i] != '}')
				goto invalid;
			i++;
		} else {
			name = s + i;
			if (i >= len ||
			    !recipe_is_name_start((unsigned char)s[i]))
				goto invalid;
			while (i < len && recipe_is_name((unsigned char)s[i]))
				i++;
			namelen = s + i - name;
		}

		val = recipe_var_get(r, name, namelen);
		if (op[0] != '\0') {
			int colon = op[0] == ':';
			char o = colon ? op[1] : op[0];
			int set = val != NULL && (!colon || val[0] != '\0');

			if (o == '-' && !set) {
				if (recipe_interp(r, word, wordlen, strict,
					depth + 1, out, why, whylen) == -1)
					return -1;
				continue;
			}
			if (o == '?' && !set) {
				snprintf(why, whylen,
				    "variable '%.*s' is not set: %.*s",
				    (int)namelen, name, (int)wordlen, word);
				return -1;
			}
			if (o == '+') {
				if (set &&
				    recipe_interp(r, word, wordlen, strict,
					depth + 1, out, why, whylen) == -1)
					return -1;
				continue;
			}
		}
		if (val == NULL) {
			if (!strict)
				continue;
			snprintf(why, whylen,
			    "variable '%.*s' is not set in " RECIPE_ENV_FILE
			    " and has no default",
			    (int)namelen, name);
			return -1;
		}
		if (recipe_buf_add(out, val, strlen(val)) == -1)
			goto toolong;
	}
	return 0;
invalid:
	snprintf(why, whylen, "invalid interpolation in '%.*s'",
	    (int)(len > 200 ? 200 : len), s);
	return -1;
toolong:
	snprintf(why, whylen, "interpolated value too long");
	return -1;
}

/* .env.sample ------------------------------------------------------------- */

static int
recipe_is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/*
 * One value of a KEY=VALUE line, the way abra's dotenv reader takes it:
 * '...' literal, "..." with \" \\ and $VAR expanded, bare words expanded,
 * cut at " #" and trimmed.  Returns a new string.
 */
static char *
recipe_env_value(const struct recipe *r, const char *s, size_t len)
{
	struct recipe_buf raw = {NULL, 0, 0}, out = {NULL, 0, 0};
	char why[128];
	size_t i;
	int expand = 1;

	while (len > 0 && recipe_is_space((unsigned char)s[len - 1]))
		len--;
	if (len > 0 && s[0] == '\'') {
		for (i = 1; i < len && s[i] != '\''; i++)
			;
		recipe_buf_add(&raw, s + 1, i - 1);
		expand = 0;
	} else if (len > 0 && s[0] == '"') {
		for (i = 1; i < len && s[i] != '"'; i++) {
			if (s[i] == '\\' && i + 1 < len &&
			    (s[i + 1] == '"' || s[i + 1] == '\\'))
				i++;
			if (recipe_buf_add(&raw, s + i, 1) == -1)
				break;
		}
	} else {
		for (i = 0; i < len; i++)
			if (s[i] == '#' && i > 0 &&
			    recipe_is_space((unsigned char)s[i - 1]))
				break;
		while (i > 0 && recipe_is_space((unsigned char)s[i - 1]))
			i--;
		recipe_buf_add(&raw, s, i);
	}
	if (raw.p == NULL)
		return xstrdup("");
	if (!expand ||
	    recipe_interp(r, raw.p, raw.len, 0, 0, &out, why, sizeof(why)) ==
		-1) {
		free(out.p);
		return raw.p; /* taken literally */
	}
	free(raw.p);
	return out.p != NULL ? out.p : xstrdup("");
}

static void
recipe_env_parse(struct recipe *r, const char *text, size_t textlen)
{
	const char *line = text, *end = text + textlen, *eol, *p, *name;
	size_t lineno = 0, namelen;
	char *value;

	for (; line < end; line = eol + 1) {
		lineno++;
		if ((eol = memchr(line, '\n', end - line)) == NULL)
			eol = end;
		for (p = line; p < eol && recipe_is_space((unsigned char)*p);)
			p++;
		if (eol - p > 7 && memcmp(p, "export ", 7) == 0)
			p += 7;
		if (p == eol || !recipe_is_name_start((unsigned char)*p))
			continue; /* blank, comment or not an assignment */
		name = p;
		while (p < eol && recipe_is_name((unsigned char)*p))
			p++;
		namelen = p - name;
		while (p < eol && recipe_is_space((unsigned char)*p))
			p++;
		if (p == eol || *p != '=')
			continue;
		p++;
		while (p < eol && recipe_is_space((unsigned char)*p))
			p++;
		value = recipe_env_value(r, p, eol - p);
		recipe_var_set(r, name, namelen, value);
		free(value);
		if (namelen == 12 && memcmp(name, "COMPOSE_FILE", 12) == 0)
			r->compose_line = lineno;
	}
}

static int
recipe_has_file(const struct recipe *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->nfiles; i++)
		if (strcmp(r->files[i], name) == 0)
			return 1;
	return 0;
}

static void
recipe_add_file(struct recipe *r, const char *name, size_t len)
{
	char *s = xstrndup(name, len);

	if (recipe_has_file(r, s)) {
		free(s);
		return;
	}
	r->files = xreallocarray(r->files, r->nfiles + 1, sizeof(*r->files));
	r->files[r->nfiles++] = s;
}

/* A COMPOSE_FILE entry must stay inside the recipe. */
static int
recipe_path_ok(const char *s, size_t len)
{
	size_t i, start = 0;

	if (len == 0 || s[0] == '/')
		return 0;
	for (i = 0; i <= len; i++) {
		if (i < len && s[i] != '/')
			continue;
		if (i - start == 2 && s[start] == '.' && s[start + 1] == '.')
			return 0;
		start = i + 1;
	}
	return 1;
}

/* COMPOSE_FILE's colon-separated set, or compose.yml alone. */
static int
recipe_default_files(struct recipe *r)
{
	const char *cf, *p, *colon;
	size_t len;

	if ((cf = recipe_var_get(r, "COMPOSE_FILE", 12)) == NULL) {
		recipe_add_file(r, RECIPE_MAIN_FILE, strlen(RECIPE_MAIN_FILE));
		return 0;
	}
	for (p = cf;; p = colon + 1) {
		if ((colon = strchr(p, ':')) == NULL)
			colon = p + strlen(p);
		while (p < colon && (*p == ' ' || *p == '\t'))
			p++;
		for (len = colon - p;
		     len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t');)
			len--;
		if (len > 0) {
			if (!recipe_path_ok(p, len)) {
				recipe_err(r, RECIPE_ENV_FILE, r->compose_line,
				    "COMPOSE_FILE entry '%.*s' is outside the recipe",
				    (int)len, p);
				return -1;
			}
			recipe_add_file(r, p, len);
		}
		if (*colon == '\0')
			break;
	}
	if (r->nfiles == 0) {
		recipe_err(r, RECIPE_ENV_FILE, r->compose_line,
		    "COMPOSE_FILE is empty");
		return -1;
	}
	return 0;
}

static int
recipe_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* RECIPE_ALL_OVERLAYS: compose.yml, the default set, then the rest sorted. */
static int
recipe_all_files(struct recipe *r, const struct recipe_src *src)
{
	char **names = NULL, why[256];
	size_t n = 0, i;
	int rc = -1;

	why[0] = '\0';
	if (src->list(src->arg, &names, &n, why, sizeof(why)) == -1) {
		recipe_err(r, NULL, 0, "%s", why);
		goto out;
	}
	if (n > 1)
		qsort(names, n, sizeof(*names), recipe_cmp_str);
	for (i = 0; i < n; i++)
		if (fnmatch(RECIPE_OVERLAY_GLOB, names[i], FNM_PERIOD) == 0)
			recipe_add_file(r, names[i], strlen(names[i]));
	rc = 0;
out:
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

/* Images ------------------------------------------------------------------ */

static int
recipe_add_image(struct recipe *r, const char *file, size_t line,
    const char *service, const char *value)
{
	struct recipe_image *img = NULL;
	struct recipe_use_list *ul;
	struct ref ref;
	char canon[REF_STRLEN];
	const char *why;
	size_t i;

	if (ref_parse(&ref, value, &why) == -1) {
		recipe_err(r, file, line, "invalid image reference '%s': %s",
		    value, why);
		return -1;
	}
	if (ref_is_floating(&ref) && !(r->flags & RECIPE_ALLOW_FLOATING)) {
		recipe_err(r, file, line,
		    "floating reference '%s' (no tag or :latest); pin it or pass --allow-floating",
		    value);
		return -1;
	}
	ref_format(&ref, canon, sizeof(canon));
	for (i = 0; i < r->nimages; i++) {
		if (strcmp(r->images[i].canonical, canon) == 0) {
			img = &r->images[i];
			break;
		}
	}
	if (img == NULL) {
		if (r->nimages == r->capimages) {
			r->capimages = r->capimages ? 2 * r->capimages : 8;
			r->images = xreallocarray(
			    r->images, r->capimages, sizeof(*r->images));
			r->uses = xreallocarray(
			    r->uses, r->capimages, sizeof(*r->uses));
		}
		img = &r->images[r->nimages];
		memset(img, 0, sizeof(*img));
		memset(&r->uses[r->nimages], 0, sizeof(*r->uses));
		img->ref = ref;
		memcpy(img->canonical, canon, sizeof(canon));
		r->nimages++;
	}
	ul = &r->uses[img - r->images];
	if (ul->n == ul->cap) {
		ul->cap = ul->cap ? 2 * ul->cap : 2;
		ul->v = xreallocarray(ul->v, ul->cap, sizeof(*ul->v));
	}
	ul->v[ul->n].file = recipe_intern(r, file);
	ul->v[ul->n].line = line;
	ul->v[ul->n].service = recipe_intern(r, service);
	ul->n++;
	return 0;
}

static int
recipe_cmp_image(const void *a, const void *b)
{
	const struct recipe_image *x = a, *y = b;

	return strcmp(x->canonical, y->canonical);
}

/* Points each image at its uses, then sorts by canonical string. */
static void
recipe_finish(struct recipe *r)
{
	size_t i;

	for (i = 0; i < r->nimages; i++) {
		r->images[i].uses = r->uses[i].v;
		r->images[i].nuses = r->uses[i].n;
	}
	if (r->nimages > 1)
		qsort(r->images, r->nimages, sizeof(*r->images),
		    recipe_cmp_image);
	/* uses[] is only for freeing now; its order no longer matters. */
}

/* YAML -------------------------------------------------------------------- */

static size_t
recipe_yaml_line(const yaml_node_t *n)
{
	return n->start_mark.line + 1;
}

static int
recipe_yaml_is_null(const yaml_node_t *n)
{
	const char *v;

	if (n->type != YAML_SCALAR_NODE)
		return 0;
	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	v = (const char *)n->data.scalar.value;
	return n->data.scalar.length == 0 || strcmp(v, "~") == 0 ||
	    strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
	    strcmp(v, "NULL") == 0;
}

static int
recipe_yaml_key_is(const yaml_node_t *k, const char *key)
{
	return k != NULL && k->type == YAML_SCALAR_NODE &&
	    k->data.scalar.length == strlen(key) &&
	    memcmp(k->data.scalar.value, key, k->data.scalar.length) == 0;
}

/* The value of key in a mapping node, or NULL. */
static yaml_node_t *
recipe_yaml_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
	yaml_node_pair_t *pair;

	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (pair = map->data.mapping.pairs.start;
	     pair < map->data.mapping.pairs.top; pair++)
		if (recipe_yaml_key_is(
			yaml_document_get_node(doc, pair->key), key))
			return yaml_document_get_node(doc, pair->value);
	return NULL;
}

/*
 * Like recipe_yaml_get, but also through YAML merge keys ("<<: *base" or
 * "<<: [*a, *b]"), which compose files use with x- extension fields.
 * libyaml leaves merges to us; the depth and budget bound alias graphs.
 */
static yaml_node_t *
recipe_yaml_get_merged(struct recipe *r, yaml_document_t *doc, yaml_node_t *map,
    const char *key, int depth)
{
	yaml_node_t *v, *m;
	yaml_node_item_t *item;

	if ((v = recipe_yaml_get(doc, map, key)) != NULL)
		return v;
	if (depth >= RECIPE_MERGE_DEPTH ||
	    (m = recipe_yaml_get(doc, map, "<<")) == NULL)
		return NULL;
	if (m->type == YAML_MAPPING_NODE) {
		if (r->merge_budget == 0)
			return NULL;
		r->merge_budget--;
		return recipe_yaml_get_merged(r, doc, m, key, depth + 1);
	}
	if (m->type != YAML_SEQUENCE_NODE)
		return NULL;
	for (item = m->data.sequence.items.start;
	     item < m->data.sequence.items.top; item++) {
		if (r->merge_budget == 0)
			return NULL;
		r->merge_budget--;
		v = recipe_yaml_get_merged(
		    r, doc, yaml_document_get_node(doc, *item), key, depth + 1);
		if (v != NULL)
			return v;
	}
	return NULL;
}

/* A "coop-cloud.${STACK_NAME}.version" label, list or mapping form. */
static void
recipe_yaml_version(struct recipe *r, yaml_document_t *doc, yaml_node_t *svc)
{
	yaml_node_t *labels, *n;
	yaml_node_item_t *item;
	yaml_node_pair_t *pair;
	const char *s;
	size_t klen = strlen(RECIPE_VERSION_LABEL);

	if (r->version != NULL)
		return;
	labels =
	    recipe_yaml_get(doc, recipe_yaml_get(doc, svc, "deploy"), "labels");
	if (labels == NULL)
		return;
	if (labels->type == YAML_SEQUENCE_NODE) {
		for (item = labels->data.sequence.items.start;
		     item < labels->data.sequence.items.top; item++) {
			n = yaml_document_get_node(doc, *item);
			if (n == NULL || n->type != YAML_SCALAR_NODE)
				continue;
			s = (const char *)n->data.scalar.value;
			if (strncmp(s, RECIPE_VERSION_LABEL, klen) == 0 &&
			    s[klen] == '=' && s[klen + 1] != '\0') {
				r->version = xstrdup(s + klen + 1);
				return;
			}
		}
	} else if (labels->type == YAML_MAPPING_NODE) {
		for (pair = labels->data.mapping.pairs.start;
		     pair < labels->data.mapping.pairs.top; pair++) {
			if (!recipe_yaml_key_is(
				yaml_document_get_node(doc, pair->key),
				RECIPE_VERSION_LABEL))
				continue;
			n = yaml_document_get_node(doc, pair->value);
			if (n != NULL && n->type == YAML_SCALAR_NODE &&
			    n->data.scalar.length > 0) {
				r->version =
				    xstrdup((const char *)n->data.scalar.value);
				return;
			}
		}
	}
}

static int
recipe_yaml_service(struct recipe *r, const char *file, yaml_document_t *doc,
    yaml_node_t *key, yaml_node_t *svc)
{
	struct recipe_buf out = {NULL, 0, 0};
	yaml_node_t *img;
	const char *name, *raw;
	char why[256];
	int rc = -1;

	if (key == NULL || key->type != YAML_SCALAR_NODE) {
		recipe_err(r, file, key ? recipe_yaml_line(key) : 0,
		    "service name is not a string");
		goto out;
	}
	name = (const char *)key->data.scalar.value;
	if (svc == NULL || recipe_yaml_is_null(svc)) {
		rc = 0; /* "svc:" with nothing under it */
		goto out;
	}
	if (svc->type != YAML_MAPPING_NODE) {
		recipe_err(r, file, recipe_yaml_line(svc),
		    "service '%s' is not a mapping", name);
		goto out;
	}
	recipe_yaml_version(r, doc, svc);
	if ((img = recipe_yaml_get_merged(r, doc, svc, "image", 0)) == NULL) {
		rc = 0; /* an overlay adding env or secrets */
		goto out;
	}
	if (img->type != YAML_SCALAR_NODE || recipe_yaml_is_null(img)) {
		recipe_err(r, file, recipe_yaml_line(img),
		    "image of service '%s' is not a string", name);
		goto out;
	}
	raw = (const char *)img->data.scalar.value;
	if (strlen(raw) != img->data.scalar.length) {
		recipe_err(r, file, recipe_yaml_line(img),
		    "image of service '%s' has a NUL byte", name);
		goto out;
	}
	if (recipe_interp(r, raw, img->data.scalar.length, 1, 0, &out, why,
		sizeof(why)) == -1) {
		recipe_err(r, file, recipe_yaml_line(img), "%s", why);
		goto out;
	}
	if (recipe_add_image(r, file, recipe_yaml_line(img), name,
		out.p != NULL ? out.p : "") == -1)
		goto out;
	rc = 0;
out:
	free(out.p);
	return rc;
}

/* Parses one compose file's bytes and adds its images to r. */
static int
recipe_parse_compose(
    struct recipe *r, const char *file, const char *buf, size_t len)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root, *services;
	yaml_node_pair_t *pair;
	int rc = -1, have_doc = 0;

	r->merge_budget = RECIPE_MERGE_BUDGET;
	if (!yaml_parser_initialize(&parser))
		fatal("out of memory initialising libyaml");
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&parser, &doc)) {
		if (parser.error == YAML_MEMORY_ERROR)
			fatal("out of memory parsing yaml");
		recipe_err(r, file, parser.problem_mark.line + 1, "%s%s%s",
		    parser.problem ? parser.problem : "invalid yaml",
		    parser.context ? " " : "",
		    parser.context ? parser.context : "");
		goto out;
	}
	have_doc = 1;
	if ((root = yaml_document_get_root_node(&doc)) == NULL ||
	    recipe_yaml_is_null(root)) {
		rc = 0; /* an empty file */
		goto out;
	}
	if (root->type != YAML_MAPPING_NODE) {
		recipe_err(r, file, recipe_yaml_line(root),
		    "top level is not a mapping");
		goto out;
	}
	services = recipe_yaml_get(&doc, root, "services");
	if (services == NULL || recipe_yaml_is_null(services)) {
		rc = 0;
		goto out;
	}
	if (services->type != YAML_MAPPING_NODE) {
		recipe_err(r, file, recipe_yaml_line(services),
		    "services is not a mapping");
		goto out;
	}
	for (pair = services->data.mapping.pairs.start;
	     pair < services->data.mapping.pairs.top; pair++)
		if (recipe_yaml_service(r, file, &doc,
			yaml_document_get_node(&doc, pair->key),
			yaml_document_get_node(&doc, pair->value)) == -1)
			goto out;
	rc = 0;
out:
	if (have_doc)
		yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return rc;
}

struct recipe *
recipe_parse_compose_buf(const char *file, const char *yaml, size_t len,
    const char *env, size_t envlen, enum recipe_flags flags, char *err,
    size_t errlen)
{
	struct recipe *r;

	r = recipe_new(flags, err, errlen);
	if (env != NULL)
		recipe_env_parse(r, env, envlen);
	recipe_add_file(r, file, strlen(file));
	if (recipe_parse_compose(r, file, yaml, len) == -1) {
		recipe_free(r);
		return NULL;
	}
	recipe_finish(r);
	return r;
}

struct recipe *
recipe_load_src(const struct recipe_src *src, enum recipe_flags flags,
    char *err, size_t errlen)
{
	struct recipe *r;
	char *buf = NULL, why[512];
	size_t len = 0, i;
	int res;

	r = recipe_new(flags, err, errlen);
	why[0] = '\0';
	res =
	    src->read(src->arg, RECIPE_ENV_FILE, &buf, &len, why, sizeof(why));
	if (res == -1) {
		recipe_err(r, NULL, 0, "%s", why);
		goto fail;
	}
	if (res == 0)
		recipe_env_parse(r, buf, len);
	free(buf);
	buf = NULL;

	if (recipe_default_files(r) == -1)
		goto fail;
	if ((flags & RECIPE_ALL_OVERLAYS) && recipe_all_files(r, src) == -1)
		goto fail;

	for (i = 0; i < r->nfiles; i++) {
		why[0] = '\0';
		res = src->read(
		    src->arg, r->files[i], &buf, &len, why, sizeof(why));
		if (res == 1 && r->compose_line > 0)
			recipe_err(r, RECIPE_ENV_FILE, r->compose_line,
			    "cannot open '%s' named by COMPOSE_FILE: no such file",
			    r->files[i]);
		else if (res == 1)
			recipe_err(r, NULL, 0, "cannot open '%s': no such file",
			    r->files[i]);
		else if (res == -1)
			recipe_err(r, NULL, 0, "%s", why);
		if (res != 0)
			goto fail;
		if (recipe_parse_compose(r, r->files[i], buf, len) == -1)
			goto fail;
		free(buf);
		buf = NULL;
	}
	recipe_finish(r);
	return r;
fail:
	free(buf);
	recipe_free(r);
	return NULL;
}

/* Reading a directory ----------------------------------------------------- */

struct recipe_dir {
	const char *dir;
};

static int
recipe_dir_read(void *arg, const char *path, char **buf, size_t *len, char *err,
    size_t errlen)
{
	const struct recipe_dir *d = arg;
	struct stat st;
	char *full = NULL, *p = NULL;
	size_t off = 0;
	ssize_t n;
	int fd = -1, rc = -1;

	xasprintf(&full, "%s/%s", d->dir, path);
	if ((fd = open(full, O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno == ENOENT) {
			rc = 1;
			goto out;
		}
		snprintf(
		    err, errlen, "cannot open '%s': %s", full, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(
		    err, errlen, "cannot read '%s': not a regular file", full);
		goto out;
	}
	if (st.st_size > RECIPE_FILE_MAX) {
		snprintf(err, errlen, "cannot read '%s': larger than %d bytes",
		    full, RECIPE_FILE_MAX);
		goto out;
	}
	p = xmalloc((size_t)st.st_size + 1);
	while (off < (size_t)st.st_size) {
		n = read(fd, p + off, (size_t)st.st_size - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(err, errlen, "cannot read '%s': %s", full,
			    strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		off += (size_t)n;
	}
	p[off] = '\0';
	*buf = p;
	*len = off;
	p = NULL;
	rc = 0;
out:
	if (fd != -1)
		close(fd);
	free(p);
	free(full);
	return rc;
}

static int
recipe_dir_list(void *arg, char ***names, size_t *n, char *err, size_t errlen)
{
	const struct recipe_dir *d = arg;
	struct dirent *de;
	DIR *dp;

	*names = NULL;
	*n = 0;
	if ((dp = opendir(d->dir)) == NULL) {
		snprintf(err, errlen, "cannot open recipe '%s': %s", d->dir,
		    strerror(errno));
		return -1;
	}
	while ((de = readdir(dp)) != NULL) {
		*names = xreallocarray(*names, *n + 1, sizeof(**names));
		(*names)[(*n)++] = xstrdup(de->d_name);
	}
	closedir(dp);
	return 0;
}

/* Reading a git tag ------------------------------------------------------- */

/*
 * The files of one version come from "git -C dir ls-tree -r" and "git show
 * version:path".  These spawn git and wait for it: fine in the CLI, which
 * is the only caller; the daemon never loads recipes on its loop.
 */
struct recipe_git {
	const char *dir;
	const char *version;
	char **paths; /* every file at that version, recursive */
	size_t npaths;
};

/* Runs git with args; its stdout into *out (new, NUL-terminated). */
static int
recipe_git_run(const char *dir, const char *const *args, char **out,
    size_t *outlen, char *err, size_t errlen)
{
	posix_spawn_file_actions_t fa;
	struct pollfd pfd[2];
	const char *argv[16];
	char chunk[4096], ebuf[512];
	struct recipe_buf o = {NULL, 0, 0};
	size_t elen = 0, i, argc = 0;
	ssize_t n;
	pid_t pid = -1;
	int po[2] = {-1, -1}, pe[2] = {-1, -1}, status, rc = -1;
	int have_fa = 0, toobig = 0, e;

	argv[argc++] = "git";
	argv[argc++] = "-C";
	argv[argc++] = dir;
	for (i = 0; args[i] != NULL && argc < nitems(argv) - 1; i++)
		argv[argc++] = args[i];
	argv[argc] = NULL;

	if (pipe2(po, O_CLOEXEC) == -1 || pipe2(pe, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "cannot run git: %s", strerror(errno));
		goto out;
	}
	if (posix_spawn_file_actions_init(&fa) != 0)
		fatal("out of memory spawning git");
	have_fa = 1;
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, po[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
	if ((e = posix_spawnp(
		 &pid, "git", &fa, NULL, (char *const *)argv, environ)) != 0) {
		pid = -1;
		snprintf(err, errlen, "cannot run git: %s", strerror(e));
		goto out;
	}
	close(po[1]);
	close(pe[1]);
	po[1] = pe[1] = -1;

	pfd[0].fd = po[0];
	pfd[1].fd = pe[0];
	while (pfd[0].fd != -1 || pfd[1].fd != -1) {
		pfd[0].events = pfd[1].events = POLLIN;
		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "cannot read from git: %s",
			    strerror(errno));
			goto out;
		}
		for (i = 0; i < 2; i++) {
			if (pfd[i].fd == -1 || pfd[i].revents == 0)
				continue;
			n = read(pfd[i].fd, chunk, sizeof(chunk));
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0) {
				pfd[i].fd = -1;
				continue;
			}
			if (i == 1) {
				if ((size_t)n > sizeof(ebuf) - 1 - elen)
					n = (ssize_t)(sizeof(ebuf) - 1 - elen);
				memcpy(ebuf + elen, chunk, (size_t)n);
				elen += (size_t)n;
			} else if (o.len + (size_t)n > RECIPE_FILE_MAX) {
				toobig = 1;
			} else {
				o.cap = o.len + (size_t)n + 1;
				o.p = xreallocarray(o.p, o.cap, 1);
				memcpy(o.p + o.len, chunk, (size_t)n);
				o.len += (size_t)n;
				o.p[o.len] = '\0';
			}
		}
	}
	ebuf[elen] = '\0';
	ebuf[strcspn(ebuf, "\n")] = '\0';
	while (waitpid(pid, &status, 0) == -1) {
		if (errno != EINTR) {
			snprintf(err, errlen, "cannot wait for git: %s",
			    strerror(errno));
			goto out;
		}
	}
	pid = -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(err, errlen, "'git %s %s' failed: %s", args[0],
		    args[1] ? args[1] : "", elen > 0 ? ebuf : "no message");
		goto out;
	}
	if (toobig) {
		snprintf(err, errlen, "'git %s %s' wrote more than %d bytes",
		    args[0], args[1] ? args[1] : "", RECIPE_FILE_MAX);
		goto out;
	}
	*out = o.p != NULL ? o.p : xstrdup("");
	*outlen = o.len;
	o.p = NULL;
	rc = 0;
out:
	if (pid != -1)
		while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
			;
	if (have_fa)
		posix_spawn_file_actions_destroy(&fa);
	for (i = 0; i < 2; i++) {
		if (po[i] != -1)
			close(po[i]);
		if (pe[i] != -1)
			close(pe[i]);
	}
	free(o.p);
	return rc;
}

static int
recipe_git_has(const struct recipe_git *g, const char *path)
{
	size_t i;

	for (i = 0; i < g->npaths; i++)
		if (strcmp(g->paths[i], path) == 0)
			return 1;
	return 0;
}

static int
recipe_git_read(void *arg, const char *path, char **buf, size_t *len, char *err,
    size_t errlen)
{
	struct recipe_git *g = arg;
	const char *args[] = {"show", NULL, NULL};
	char *spec = NULL;
	int rc;

	if (!recipe_git_has(g, path))
		return 1;
	xasprintf(&spec, "%s:./%s", g->version, path);
	args[1] = spec;
	rc = recipe_git_run(g->dir, args, buf, len, err, errlen);
	free(spec);
	return rc;
}

static int
recipe_git_list(void *arg, char ***names, size_t *n, char *err, size_t errlen)
{
	struct recipe_git *g = arg;
	size_t i;

	(void)err;
	(void)errlen;
	*names = NULL;
	*n = 0;
	for (i = 0; i < g->npaths; i++) {
		if (strchr(g->paths[i], '/') != NULL)
			continue;
		*names = xreallocarray(*names, *n + 1, sizeof(**names));
		(*names)[(*n)++] = xstrdup(g->paths[i]);
	}
	return 0;
}

/* A version is a tag or commit name, never an option or "rev:path". */
static int
recipe_git_version_ok(const char *v)
{
	const unsigned char *p;

	if (*v == '\0' || *v == '-')
		return 0;
	for (p = (const unsigned char *)v; *p != '\0'; p++)
		if (*p <= ' ' || *p == ':' || *p == 0x7f)
			return 0;
	return 1;
}

static int
recipe_git_open(struct recipe_git *g, char *err, size_t errlen)
{
	const char *args[] = {"ls-tree", "-r", "--name-only", "-z", NULL, NULL};
	char *out = NULL, *p, why[512];
	size_t len = 0, cap = 0;
	int rc = -1;

	if (!recipe_git_version_ok(g->version)) {
		snprintf(err, errlen, "invalid version '%s'", g->version);
		return -1;
	}
	args[4] = g->version;
	why[0] = '\0';
	if (recipe_git_run(g->dir, args, &out, &len, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "cannot read version '%s' of '%s': %s",
		    g->version, g->dir, why);
		goto out;
	}
	for (p = out; p < out + len; p += strlen(p) + 1) {
		if (g->npaths == cap) {
			cap = cap ? 2 * cap : 16;
			g->paths =
			    xreallocarray(g->paths, cap, sizeof(*g->paths));
		}
		g->paths[g->npaths++] = xstrdup(p);
	}
	rc = 0;
out:
	free(out);
	return rc;
}

struct recipe *
recipe_load(const char *dir, const char *version, enum recipe_flags flags,
    char *err, size_t errlen)
{
	struct recipe_src src;
	struct recipe_dir d;
	struct recipe_git g;
	struct recipe *r = NULL;
	struct stat st;
	size_t i;

	memset(&g, 0, sizeof(g));
	if (errlen > 0)
		err[0] = '\0';
	if (stat(dir, &st) == -1) {
		snprintf(err, errlen, "cannot open recipe '%s': %s", dir,
		    strerror(errno));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "cannot open recipe '%s': %s", dir,
		    strerror(ENOTDIR));
		return NULL;
	}
	if (version == NULL) {
		src.read = recipe_dir_read;
		src.list = recipe_dir_list;
		d.dir = dir;
		src.arg = &d;
		return recipe_load_src(&src, flags, err, errlen);
	}
	g.dir = dir;
	g.version = version;
	if (recipe_git_open(&g, err, errlen) == 0) {
		src.read = recipe_git_read;
		src.list = recipe_git_list;
		src.arg = &g;
		r = recipe_load_src(&src, flags, err, errlen);
	}
	for (i = 0; i < g.npaths; i++)
		free(g.paths[i]);
	free(g.paths);
	return r;
}

int
recipe_tags(const char *dir, char ***tags, size_t *n, char *err, size_t errlen)
{
	const char *args[] = {"tag", "--list", NULL};
	struct stat st;
	char *out = NULL, *p, *nl, *git = NULL;
	size_t len = 0;

	*tags = NULL;
	*n = 0;
	/* dir itself, not a parent: a plain directory inside some other
	 * checkout must not borrow that checkout's tags */
	xasprintf(&git, "%s/.git", dir);
	if (stat(git, &st) == -1) {
		free(git);
		return 1;
	}
	free(git);
	if (recipe_git_run(dir, args, &out, &len, err, errlen) == -1)
		return -1;
	for (p = out; *p != '\0'; p = nl) {
		if ((nl = strchr(p, '\n')) != NULL)
			*nl++ = '\0';
		else
			nl = p + strlen(p);
		if (*p == '\0')
			continue;
		*tags = xreallocarray(*tags, *n + 1, sizeof **tags);
		(*tags)[(*n)++] = xstrdup(p);
	}
	free(out);
	return 0;
}
