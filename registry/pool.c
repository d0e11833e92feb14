/*
 * registry/pool.c: a small worker pool for the few things that may block
 * for long (the fsync and rename of a large blob).  Work runs on a worker
 * thread; its completion comes back to the event loop through a pipe and
 * runs there, so nothing else in the process ever sees a second thread.
 */
#include <sys/queue.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "../common/common.h"
#include "registry.h"

struct pool_job {
	TAILQ_ENTRY(pool_job) entry;
	void (*work)(void *);
	void (*done)(void *);
	void *arg;
};

TAILQ_HEAD(pool_jobs, pool_job);

struct pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct pool_jobs todo; /* guarded by mu */
	struct pool_jobs done; /* guarded by mu */
	int stopping;	       /* guarded by mu */
	pthread_t *threads;
	size_t nthreads;
	int pipe[2];
	struct event *ev;
};

static void *
pool_thread(void *arg)
{
	struct pool *p = arg;
	struct pool_job *j;
	char one = 1;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (TAILQ_EMPTY(&p->todo) && !p->stopping)
			pthread_cond_wait(&p->cv, &p->mu);
		if ((j = TAILQ_FIRST(&p->todo)) == NULL)
			break; /* stopping, nothing left */
		TAILQ_REMOVE(&p->todo, j, entry);
		pthread_mutex_unlock(&p->mu);
		j->work(j->arg);
		pthread_mutex_lock(&p->mu);
		TAILQ_INSERT_TAIL(&p->done, j, entry);
		/* a full pipe already wakes the loop */
		(void)!write(p->pipe[1], &one, 1);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Runs the completions that are in (on the loop's thread). */
static void
pool_run_done(struct pool *p)
{
	struct pool_jobs done;
	struct pool_job *j;

	TAILQ_INIT(&done);
	pthread_mutex_lock(&p->mu);
	TAILQ_CONCAT(&done, &p->done, entry);
	pthread_mutex_unlock(&p->mu);
	while ((j = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, j, entry);
		j->done(j->arg);
		free(j);
	}
}

static void
pool_event_cb(evutil_socket_t fd, short what, void *arg)
{
	char buf[256];

	(void)what;
	while (read(fd, buf, sizeof buf) > 0)
		;
	pool_run_done(arg);
}

struct pool *
pool_new(struct event_base *base, size_t nthreads)
{
	struct pool *p = xcalloc(1, sizeof *p);
	size_t i;
	int err;

	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	TAILQ_INIT(&p->todo);
	TAILQ_INIT(&p->done);
	if (pipe2(p->pipe, O_NONBLOCK | O_CLOEXEC) == -1)
		fatal("cannot create the worker pool's pipe: %s",
		    strerror(errno));
	p->ev =
	    event_new(base, p->pipe[0], EV_READ | EV_PERSIST, pool_event_cb, p);
	if (p->ev == NULL || event_add(p->ev, NULL) == -1)
		fatal("cannot watch the worker pool's pipe");
	p->threads = xcalloc(nthreads, sizeof *p->threads);
	for (i = 0; i < nthreads; i++) {
		if ((err = pthread_create(
			 &p->threads[i], NULL, pool_thread, p)) != 0)
			fatal(
			    "cannot start a worker thread: %s", strerror(err));
		p->nthreads++;
	}
	return p;
}

void
pool_submit(
    struct pool *p, void (*work)(void *), void (*done)(void *), void *arg)
{
	struct pool_job *j = xcalloc(1, sizeof *j);

	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&p->mu);
	TAILQ_INSERT_TAIL(&p->todo, j, entry);
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

void
pool_free(struct pool *p)
{
	size_t i;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	/* workers finish what was submitted, then exit */
	for (i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pool_run_done(p);
	event_free(p->ev);
	close(p->pipe[0]);
	close(p->pipe[1]);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->threads);
	free(p);
}
