#!/usr/bin/env bash
# test_enrol_strict: the enroll admin command reads its JSON strictly
# (issue 12): a version or image entry with a key it does not know is
# refused with a 400 naming the key, instead of the key being ignored; the
# entries `ccprewarm enroll` sends are accepted.
. "$(dirname "$0")/lib.sh"
t_init enrol_strict

dead=$(free_port DEAD)
start_ccprewarm CCP "http://127.0.0.1:$dead" || exit 1
E=$CCP_URL/_ccprewarm/v1/enroll
J=(-H 'Content-Type: application/json' --data-binary)

req POST "$E" "${J[@]}" '{"recipe":"strict","versions":[{"version":"1","reason":"explicit","images":["test/a:v1"],"imgaes":[]}]}'
check enrol_strict/version-extra-key "a version with 'imgaes': $(exchange)" \
	eval '[ "$R_CODE" = 400 ] && grep -q imgaes "$R_BODY"'
req POST "$E" "${J[@]}" '{"recipe":"strict","versions":[{"version":"1","reason":"explicit","images":[{"ref":"test/a:v1","digets":"sha256:0123456789"}]}]}'
check enrol_strict/image-extra-key "an image with 'digets': $(exchange)" \
	eval '[ "$R_CODE" = 400 ] && grep -q digets "$R_BODY"'
req POST "$E" "${J[@]}" '{"recipe":"strict","versions":[{"version":1,"reason":"explicit","images":["test/a:v1"]}]}'
check enrol_strict/version-not-a-string "a number as version: $(exchange)" \
	eval '[ "$R_CODE" = 400 ] && grep -q "each version needs" "$R_BODY"'
req POST "$E" "${J[@]}" '{"recipe":"strict","versions":[{"version":"1","reason":"explicit","images":[{"ref":"test/a:v1","service":"app","digest":"sha256:0123456789abcdef"}]}]}'
check enrol_strict/known-keys "the keys ccprewarm enroll sends: $(exchange)" \
	[ "$R_CODE" = 202 ]
t_done
