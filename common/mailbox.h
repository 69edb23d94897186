/*
 * mailbox: hands work from any thread to one libevent loop.
 *
 * A thread posts an item; the loop runs the item's function on its own
 * thread, in the order of posting. Items belong to their posters, usually
 * embedded in the object they concern, so posting never allocates and
 * never fails. An item may be posted again once its function has started,
 * not before.
 *
 * The loop is woken through a pipe, written only when the mailbox stops
 * being empty.
 */
#ifndef FERRY_MAILBOX_H
#define FERRY_MAILBOX_H

#include <event2/event.h>
#include <stddef.h>

struct mailbox_item {
    struct mailbox_item *next;
    void               (*run)(struct mailbox_item *item);
};

/* Returns the object of type that embeds item as its member. */
#define MAILBOX_OWNER(item, type, member) \
    ((type *)(void *)((char *)(item) - offsetof(type, member)))

struct mailbox;

/* Registers the mailbox with base. Returns NULL and fills err on failure. */
struct mailbox *mailbox_new(struct event_base *base, char *err,
                            size_t errlen);

/*
 * Frees the mailbox, from the loop's thread or once the loop has stopped.
 * Items still posted are not run and stay their posters'.
 */
void mailbox_free(struct mailbox *mb);

/* Queues item for the loop. Safe from any thread. */
void mailbox_post(struct mailbox *mb, struct mailbox_item *item);

#endif
