/*
 * cmd/client.c: the CLI's side of the admin API: one blocking HTTP request
 * at a time with libcurl's easy interface (fine in a command-line client;
 * the daemon never blocks).  CURLcode stays in this file.
 */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "../common/common.h"
#include "cmd.h"

struct client_buf {
	char *data;
	size_t len;
};

static size_t
client_write_cb(char *p, size_t size, size_t n, void *arg)
{
	struct client_buf *b = arg;
	size_t len = size * n;

	if (b->len + len > 64 * 1024 * 1024)
		return 0;
	b->data = xreallocarray(b->data, b->len + len + 1, 1);
	memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = '\0';
	return len;
}

const char *
client_default_server(void)
{
	const char *s = getenv("CCPREWARM_SERVER");

	return s != NULL ? s : CONFIG_DEFAULT_SERVER;
}

int
client_request(const char *method, const char *url, const char *body,
    struct client_reply *out)
{
	return client_request_unix(NULL, method, url, body, out);
}

int
client_request_unix(const char *sock, const char *method, const char *url,
    const char *body, struct client_reply *out)
{
	struct client_buf b = {NULL, 0};
	struct curl_slist *hdrs = NULL;
	CURLcode code;
	CURL *e;
	int rc = -1;

	memset(out, 0, sizeof *out);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if ((e = curl_easy_init()) == NULL)
		fatal("cannot create a curl handle");
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, client_write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	if (sock != NULL)
		curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, sock);
	if (body != NULL) {
		hdrs =
		    curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	}
	if ((code = curl_easy_perform(e)) != CURLE_OK) {
		xstrlcpy(
		    out->error, curl_easy_strerror(code), sizeof out->error);
		goto out;
	}
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &out->status);
	out->body = b.data != NULL ? b.data : xstrdup("");
	b.data = NULL;
	rc = 0;
out:
	free(b.data);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(e);
	curl_global_cleanup();
	return rc;
}

/*
 * One admin-API request to server (".../_ccprewarm/v1/" + path): the parsed
 * JSON reply, or NULL after a one-line message.  An error reply is either an
 * OCI error body ({"errors":[{"code","message","detail"}]}) or {"error":"..."}.
 */
json_t *
client_admin(
    const char *server, const char *method, const char *path, const char *body)
{
	struct client_reply rep;
	json_t *j = NULL, *e;
	json_error_t jerr;
	const char *code, *msg;
	char *url;

	xasprintf(&url, "%s/_ccprewarm/v1/%s", server, path);
	if (client_request(method, url, body, &rep) == -1) {
		log_error(
		    "cannot reach '%s': %s (is `ccprewarm serve` running? --server URL)",
		    server, rep.error);
		goto out;
	}
	j = json_loads(rep.body, 0, &jerr);
	if (rep.status >= 300) {
		e = json_array_get(json_object_get(j, "errors"), 0);
		code = json_string_value(json_object_get(e, "code"));
		msg = json_string_value(json_object_get(e, "detail"));
		if (msg == NULL)
			msg = json_string_value(json_object_get(j, "error"));
		log_error("%s %s: %ld%s%s: %s", method, path, rep.status,
		    code != NULL ? " " : "", code != NULL ? code : "",
		    msg != NULL ? msg : rep.body);
		json_decref(j);
		j = NULL;
	} else if (j == NULL)
		log_error("%s %s: the reply is not JSON", method, path);
out:
	free(rep.body);
	free(url);
	return j;
}
