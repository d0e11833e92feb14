/*
 * registry/loop.c: several event loops.  Loop 0 is the owner (the
 * server's base, main's thread); every other loop has its own thread,
 * event_base, evhttp and SO_REUSEPORT listener on the same address.  A
 * serving loop answers store hits itself; any other request is relayed:
 * a shadow request on loop 0 does the work (fills, upstream, admin) with
 * the handlers as they are, and its output comes back as messages that the
 * front request on the serving loop writes to its client.  Loops talk only
 * through their inboxes (a mutex, a list and a pipe to wake the loop).
 */
#include <sys/socket.h>

#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "../common/common.h"
#include "internal.h"

enum loop_msg_kind {
	LOOP_MSG_REQUEST, /* to loop 0: start a shadow for a front */
	LOOP_MSG_SENT,	  /* to loop 0: the front wrote a file segment */
	LOOP_MSG_GONE,	  /* to loop 0: the front ended first */
	LOOP_MSG_START,	  /* to a front: status and headers of a stream */
	LOOP_MSG_FILE,	  /* to a front: a file segment */
	LOOP_MSG_REPLY,	  /* to a front: a whole reply, then finish */
	LOOP_MSG_END,	  /* to a front: end of the stream, then finish */
	LOOP_MSG_ABORT,	  /* to a front: cut, then finish */
	LOOP_MSG_STOP,	  /* to a serving loop: stop accepting */
	LOOP_MSG_EXIT,	  /* to a serving loop: leave the loop */
};

/* A front and its shadow.  front is only touched on the front's loop,
 * shadow only on loop 0; refs by both sides and by messages in flight. */
struct loop_link {
	int refs; /* atomic */
	struct loop *floop;
	struct req *front;
	struct req *shadow;
};

struct loop_msg {
	TAILQ_ENTRY(loop_msg) entry;
	enum loop_msg_kind kind;
	struct loop_link *link;
	int status;
	struct evkeyvalq headers;
	struct evbuffer *body;
	int fd;
	uint64_t off, len;
	char *why;
	struct loop_relay acct;
	/* LOOP_MSG_REQUEST */
	int mask;
	enum req_method method;
	char *path;
	char peer[48];
};

static struct loop_link *
loop_link_ref(struct loop_link *l)
{
	__atomic_add_fetch(&l->refs, 1, __ATOMIC_ACQ_REL);
	return l;
}

static void
loop_link_unref(struct loop_link *l)
{
	if (l != NULL && __atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(l);
}

static struct loop_msg *
loop_msg_new(enum loop_msg_kind kind, struct loop_link *link)
{
	struct loop_msg *m = xcalloc(1, sizeof *m);

	m->kind = kind;
	m->link = link != NULL ? loop_link_ref(link) : NULL;
	m->fd = -1;
	TAILQ_INIT(&m->headers);
	return m;
}

static void
loop_msg_free(struct loop_msg *m)
{
	evhttp_clear_headers(&m->headers);
	if (m->body != NULL)
		evbuffer_free(m->body);
	if (m->fd != -1)
		close(m->fd);
	free(m->why);
	free(m->path);
	loop_link_unref(m->link);
	free(m);
}

static void
loop_post(struct loop *l, struct loop_msg *m)
{
	char c = 0;
	int wake;

	pthread_mutex_lock(&l->mu);
	wake = TAILQ_EMPTY(&l->inbox);
	TAILQ_INSERT_TAIL(&l->inbox, m, entry);
	pthread_mutex_unlock(&l->mu);
	/* a full pipe already wakes it */
	if (wake && write(l->wake[1], &c, 1) == -1 && errno != EAGAIN)
		log_warn(
		    "cannot wake event loop %d: %s", l->id, strerror(errno));
}

static void
loop_copy_headers(struct evkeyvalq *to, const struct evkeyvalq *from)
{
	struct evkeyval *kv;

	TAILQ_FOREACH(kv, from, next)
		evhttp_add_header(to, kv->key, kv->value);
}

/* Serving loop side ------------------------------------------------------ */

static void
loop_front_sent_cb(struct req *front)
{
	struct loop_link *link = front->link;

	if (link != NULL)
		loop_post(
		    front->srv->loops[0], loop_msg_new(LOOP_MSG_SENT, link));
}

void
loop_relay(struct req *r)
{
	struct loop_link *link = xcalloc(1, sizeof *link);
	struct loop_msg *m;
	const char *body;
	size_t len;

	link->refs = 1; /* the front's; the shadow takes its own */
	link->floop = r->loop;
	link->front = r;
	r->link = link;
	r->state = REQ_WAITING;
	m = loop_msg_new(LOOP_MSG_REQUEST, link);
	m->mask = r->relay_mask;
	m->method = r->method;
	m->path = xstrdup(r->path);
	xstrlcpy(m->peer, r->peer, sizeof m->peer);
	loop_copy_headers(&m->headers, evhttp_request_get_input_headers(r->ev));
	body = req_body(r, &len);
	m->body = evbuffer_new();
	evbuffer_add(m->body, body, len);
	loop_post(r->srv->loops[0], m);
}

void
loop_front_gone(struct req *r)
{
	struct loop_link *link = r->link;

	r->link = NULL;
	link->front = NULL;
	loop_post(r->srv->loops[0], loop_msg_new(LOOP_MSG_GONE, link));
	loop_link_unref(link);
}

/* A message for a front; dropped if the front has already ended. */
static void
loop_front_msg(struct loop_msg *m)
{
	struct req *r = m->link->front;
	struct loop_link *link = m->link;

	if (r == NULL)
		return;
	if (m->kind != LOOP_MSG_FILE && m->kind != LOOP_MSG_START) {
		/* the last word: the front finishes on its own from here */
		r->link = NULL;
		link->front = NULL;
		loop_link_unref(link);
	}
	req_relayed(r, &m->acct);
	switch (m->kind) {
	case LOOP_MSG_START:
		req_relay_start(r, m->status, &m->headers);
		break;
	case LOOP_MSG_FILE:
		req_stream_file(r, m->fd, m->off, m->len, loop_front_sent_cb);
		break;
	case LOOP_MSG_REPLY:
		req_relay_reply(r, m->status, &m->headers, m->body, m->why);
		break;
	case LOOP_MSG_END:
		req_relay_end(r, m->why);
		break;
	default:
		req_abort(r, m->why != NULL ? m->why : "relay failed");
		break;
	}
}

/* Loop 0 side ------------------------------------------------------------- */

static void
loop_shadow_post(struct req *s, struct loop_msg *m)
{
	m->acct.cache = s->cache;
	m->acct.upstream_ms = s->upstream_ms;
	m->acct.served = s->served;
	m->acct.have_served = s->have_served;
	xstrlcpy(m->acct.up_cache, s->up_cache, sizeof m->acct.up_cache);
	loop_post(s->link->floop, m);
}

void
loop_shadow_attach(struct req *s)
{
	s->link->shadow = s;
	loop_link_ref(s->link);
}

void
loop_shadow_start(struct req *s, int status)
{
	struct loop_msg *m = loop_msg_new(LOOP_MSG_START, s->link);

	m->status = status;
	loop_copy_headers(
	    &m->headers, evhttp_request_get_output_headers(s->ev));
	loop_shadow_post(s, m);
}

int
loop_shadow_file(struct req *s, int fd, uint64_t off, uint64_t len)
{
	struct loop_msg *m;
	int dfd;

	if ((dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) == -1)
		return -1;
	m = loop_msg_new(LOOP_MSG_FILE, s->link);
	m->fd = dfd;
	m->off = off;
	m->len = len;
	loop_shadow_post(s, m);
	return 0;
}

void
loop_shadow_reply(struct req *s, int status, struct evbuffer *body)
{
	struct loop_msg *m = loop_msg_new(LOOP_MSG_REPLY, s->link);

	m->status = status;
	loop_copy_headers(
	    &m->headers, evhttp_request_get_output_headers(s->ev));
	m->body = evbuffer_new();
	if (body != NULL)
		evbuffer_add_buffer(m->body, body);
	if (s->relay_end != NULL)
		loop_msg_free(s->relay_end);
	s->relay_end = m;
}

void
loop_shadow_end(struct req *s)
{
	if (s->relay_end == NULL)
		s->relay_end = loop_msg_new(LOOP_MSG_END, s->link);
}

void
loop_shadow_retire(struct req *s, const char *why)
{
	struct loop_link *link = s->link;
	struct loop_msg *m = s->relay_end;

	s->relay_end = NULL;
	if (m == NULL)
		m = loop_msg_new(LOOP_MSG_ABORT, link);
	m->status = m->kind == LOOP_MSG_REPLY ? m->status : s->status;
	m->why = why != NULL ? xstrdup(why) : NULL;
	loop_shadow_post(s, m);
	link->shadow = NULL;
	s->link = NULL;
	loop_link_unref(link);
}

void
loop_shadow_discard(struct req *s)
{
	if (s->relay_end != NULL)
		loop_msg_free(s->relay_end);
	s->relay_end = NULL;
}

static void
loop_owner_msg(struct loop *l, struct loop_msg *m)
{
	struct req *s = m->link != NULL ? m->link->shadow : NULL;

	switch (m->kind) {
	case LOOP_MSG_REQUEST:
		http_shadow_new(l, m->link, m->method, m->mask, m->path,
		    m->peer, &m->headers, m->body);
		break;
	case LOOP_MSG_SENT:
		if (s != NULL)
			req_chunk_sent(s);
		break;
	case LOOP_MSG_GONE:
		if (s != NULL) {
			s->client_gone = 1;
			req_finish(s, 499, "client closed the connection");
		}
		break;
	default:
		break;
	}
}

/* Inboxes ---------------------------------------------------------------- */

static void
loop_run_inbox(struct loop *l)
{
	TAILQ_HEAD(, loop_msg) q = TAILQ_HEAD_INITIALIZER(q);
	struct loop_msg *m;

	pthread_mutex_lock(&l->mu);
	TAILQ_CONCAT(&q, &l->inbox, entry);
	pthread_mutex_unlock(&l->mu);
	while ((m = TAILQ_FIRST(&q)) != NULL) {
		TAILQ_REMOVE(&q, m, entry);
		switch (m->kind) {
		case LOOP_MSG_STOP:
			http_stop(l);
			break;
		case LOOP_MSG_EXIT:
			event_base_loopexit(l->base, NULL);
			break;
		case LOOP_MSG_REQUEST:
		case LOOP_MSG_SENT:
		case LOOP_MSG_GONE:
			loop_owner_msg(l, m);
			break;
		default:
			loop_front_msg(m);
			break;
		}
		loop_msg_free(m);
	}
}

static void
loop_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	char buf[64];

	(void)what;
	while (read(fd, buf, sizeof buf) > 0)
		;
	loop_run_inbox(arg);
}

/* Lifecycle -------------------------------------------------------------- */

static struct loop *
loop_new(struct server *srv, int id, struct event_base *base)
{
	struct loop *l = xcalloc(1, sizeof *l);

	l->srv = srv;
	l->id = id;
	l->base = base;
	l->ctr = id == 0 ? &srv->ctr : &l->own;
	TAILQ_INIT(&l->reqs);
	TAILQ_INIT(&l->inbox);
	pthread_mutex_init(&l->mu, NULL);
	pthread_mutex_init(&l->ctr_mu, NULL);
	if (pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) == -1)
		fatal("cannot create a pipe for event loop %d: %s", id,
		    strerror(errno));
	l->wake_ev =
	    event_new(base, l->wake[0], EV_READ | EV_PERSIST, loop_wake_cb, l);
	if (l->wake_ev == NULL)
		fatal("out of memory creating event loop %d", id);
	event_add(l->wake_ev, NULL);
	return l;
}

static void *
loop_thread_main(void *arg)
{
	struct loop *l = arg;

	event_base_dispatch(l->base);
	__atomic_store_n(&l->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

int
loop_start(struct server *srv)
{
	size_t n = srv->opts->loops > 0 ? (size_t)srv->opts->loops : 1;
	struct event_base *base;
	struct loop *l;
	size_t i;

	if (n > SERVER_MAX_LOOPS)
		n = SERVER_MAX_LOOPS;
	srv->loops[0] = loop_new(srv, 0, srv->base);
	srv->nloops = 1;
	if (http_start(srv->loops[0], n > 1, srv->opts->listen_port) == -1)
		return -1;
	for (i = 1; i < n; i++) {
		if ((base = event_base_new()) == NULL)
			fatal("cannot create event loop %zu", i);
		l = loop_new(srv, (int)i, base);
		srv->loops[srv->nloops++] = l;
		if (http_start(l, 1, http_port(srv->loops[0])) == -1)
			return -1;
	}
	for (i = 1; i < srv->nloops; i++) {
		l = srv->loops[i];
		if (pthread_create(&l->thread, NULL, loop_thread_main, l) != 0)
			fatal("cannot start the thread of event loop %zu", i);
		l->running = 1;
	}
	return 0;
}

void
loop_stop_accepting(struct server *srv)
{
	size_t i;

	http_stop(srv->loops[0]);
	for (i = 1; i < srv->nloops; i++)
		loop_post(srv->loops[i], loop_msg_new(LOOP_MSG_STOP, NULL));
}

int
loop_idle(struct server *srv)
{
	size_t i;

	for (i = 0; i < srv->nloops; i++)
		if (__atomic_load_n(&srv->loops[i]->nreqs, __ATOMIC_ACQUIRE) >
		    0)
			return 0;
	return 1;
}

/* Stops the serving loops' threads; their state is loop 0's from here. */
void
loop_join(struct server *srv)
{
	struct loop *l;
	size_t i;

	for (i = 1; i < srv->nloops; i++) {
		l = srv->loops[i];
		if (!l->running)
			continue;
		loop_post(l, loop_msg_new(LOOP_MSG_EXIT, NULL));
		pthread_join(l->thread, NULL);
		l->running = 0;
	}
}

static void
loop_drop_inbox(struct loop *l)
{
	struct loop_msg *m;

	pthread_mutex_lock(&l->mu);
	while ((m = TAILQ_FIRST(&l->inbox)) != NULL) {
		TAILQ_REMOVE(&l->inbox, m, entry);
		loop_msg_free(m);
	}
	pthread_mutex_unlock(&l->mu);
}

/*
 * After loop_join and after loop 0's requests were cut: delivers what the
 * shadows said last, cuts what is left and frees every evhttp (and with
 * it every connection).  Requests still on their way to loop 0 are
 * dropped (their fronts are cut).  The counters stay until loop_free_all.
 */
void
loop_cut_all(struct server *srv)
{
	struct loop *l;
	struct req *r;
	size_t i;

	for (i = 1; i < srv->nloops; i++) {
		l = srv->loops[i];
		loop_run_inbox(l);
		while ((r = TAILQ_FIRST(&l->reqs)) != NULL)
			req_abort(r, "shutting down");
		http_free(l);
		loop_drop_inbox(l);
	}
	if (srv->nloops > 0) {
		loop_drop_inbox(srv->loops[0]);
		http_free(srv->loops[0]);
		loop_drop_inbox(srv->loops[0]);
	}
}

void
loop_free_all(struct server *srv)
{
	struct loop *l;
	size_t i;

	for (i = 0; i < srv->nloops; i++) {
		l = srv->loops[i];
		loop_drop_inbox(l);
		event_free(l->wake_ev);
		close(l->wake[0]);
		close(l->wake[1]);
		if (i > 0)
			event_base_free(l->base);
		pthread_mutex_destroy(&l->mu);
		pthread_mutex_destroy(&l->ctr_mu);
		free(l);
		srv->loops[i] = NULL;
	}
	srv->nloops = 0;
}
