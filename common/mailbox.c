#include "mailbox.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

struct mailbox {
    pthread_mutex_t      lock;
    struct mailbox_item *head;      /* guarded by lock */
    struct mailbox_item *tail;
    int                  wakeup[2]; /* pipe: read, write */
    struct event        *event;
};

static void mailbox_on_wakeup(evutil_socket_t fd, short what, void *arg);


struct mailbox *
mailbox_new(struct event_base *base, char *err, size_t errlen)
{
    struct mailbox *mb = xcalloc(1, sizeof(*mb));

    pthread_mutex_init(&mb->lock, NULL);
    mb->wakeup[0] = mb->wakeup[1] = -1;
    if (pipe2(mb->wakeup, O_NONBLOCK | O_CLOEXEC) == -1) {
        snprintf(err, errlen, "cannot create a wakeup pipe: %s",
                 strerror(errno));
        mailbox_free(mb);
        return NULL;
    }
    mb->event = event_new(base, mb->wakeup[0], EV_READ | EV_PERSIST,
                          mailbox_on_wakeup, mb);
    if (mb->event == NULL || event_add(mb->event, NULL) == -1) {
        snprintf(err, errlen, "cannot register a wakeup event");
        mailbox_free(mb);
        return NULL;
    }
    return mb;
}


void
mailbox_free(struct mailbox *mb)
{
    if (mb == NULL)
        return;
    if (mb->event != NULL)
        event_free(mb->event);
    if (mb->wakeup[0] != -1)
        close(mb->wakeup[0]);
    if (mb->wakeup[1] != -1)
        close(mb->wakeup[1]);
    pthread_mutex_destroy(&mb->lock);
    free(mb);
}


void
mailbox_post(struct mailbox *mb, struct mailbox_item *item)
{
    bool    was_empty;
    ssize_t written;

    item->next = NULL;
    pthread_mutex_lock(&mb->lock);
    was_empty = mb->head == NULL;
    if (was_empty)
        mb->head = item;
    else
        mb->tail->next = item;
    mb->tail = item;

    /*
     * One byte per batch. A write that fails because the pipe is full
     * loses nothing, since the unread bytes already wake the loop.
     */
    if (was_empty) {
        written = write(mb->wakeup[1], "", 1);
        (void)written;
    }
    pthread_mutex_unlock(&mb->lock);
}


/*
 * Runs every item posted so far. The pipe is emptied before the list is
 * taken, so an item posted meanwhile either is in the list or has written
 * a new byte.
 */
static void
mailbox_on_wakeup(evutil_socket_t fd, short what, void *arg)
{
    struct mailbox      *mb = arg;
    struct mailbox_item *item, *next;
    char                 buf[64];

    while (read(fd, buf, sizeof(buf)) > 0)
        continue;

    pthread_mutex_lock(&mb->lock);
    item = mb->head;
    mb->head = mb->tail = NULL;
    pthread_mutex_unlock(&mb->lock);

    for (; item != NULL; item = next) {
        /* The function may post the item again, which rewrites next. */
        next = item->next;
        item->run(item);
    }
}
