/*
 * tests/fuzz/fuzz_auth.c: libFuzzer target for what an upstream's auth
 * sends (registry/auth.c): the WWW-Authenticate challenge (scheme and
 * auth-params), the realm check against the configured upstream, and the
 * token server's JSON reply.  Input: the challenge, optionally a NUL byte
 * and the token reply.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../registry/registry.h"

#define FUZZ_MAX_LEN 16384

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_auth_keys[] = {
    "realm", "service", "scope", "error", "REALM", ""};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char buf[FUZZ_MAX_LEN + 1], *v, *token;
	const char *reply = NULL;
	enum auth_scheme s;
	size_t i, clen = size;
	long expires = 0;

	if (size > FUZZ_MAX_LEN)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	if ((v = memchr(buf, '\0', size)) != NULL) {
		clen = (size_t)(v - buf);
		reply = v + 1;
	}
	s = auth_scheme_parse(buf);
	if (s != AUTH_NONE && s != AUTH_BASIC && s != AUTH_BEARER)
		abort();
	for (i = 0; i < sizeof(fuzz_auth_keys) / sizeof(*fuzz_auth_keys); i++) {
		v = auth_challenge_param(buf, fuzz_auth_keys[i]);
		if (v != NULL && strlen(v) > clen)
			abort();
		if (v != NULL && i == 0) {
			/* A realm is only ever used over http(s), on the
			 * registry's own host or a sibling.  (A first
			 * version of this check looked for "localhost"
			 * anywhere in the URL, a second wanted "//":
			 * crashers/fuzz_auth/ holds what proved them
			 * wrong; curl takes "https:/host" too.) */
			if (auth_realm_check(
				v, "https://registry-1.docker.io") == 0 &&
			    (strncasecmp(v, "http", 4) != 0 ||
				strcasestr(v, "docker.io") == NULL))
				abort();
			(void)auth_realm_check(v, "http://127.0.0.1:5000");
		}
		free(v);
	}
	if (reply != NULL) {
		size_t rlen = size - clen - 1;

		if (auth_token_reply_parse(reply, rlen, &token, &expires) ==
		    0) {
			if (token == NULL || token[0] == '\0' || expires < 1)
				abort();
			free(token);
		} else if (token != NULL)
			abort();
	}
	return 0;
}
