#include "dedup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static uint64_t dedup_hash(const char *id);
static size_t dedup_slot_of(const struct dedup *set, const char *id);
static void dedup_remove_slot(struct dedup *set, size_t slot);
static void dedup_drop_oldest(struct dedup *set);


/* FNV-1a, 64 bits. Ids end in 80 random bits, so it spreads them well. */
static uint64_t
dedup_hash(const char *id)
{
    uint64_t h = 14695981039346656037ULL;

    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return h;
}


struct dedup *
dedup_new(size_t max)
{
    struct dedup *set = xcalloc(1, sizeof(*set));

    if (max == 0 || max > UINT32_MAX / 4) {
        fprintf(stderr, "fatal: dedup_new: max %zu is out of range\n", max);
        abort();
    }
    set->max = max;
    set->entries = xcalloc(max, sizeof(*set->entries));
    set->nslots = 1;
    while (set->nslots < 2 * max)
        set->nslots *= 2;
    set->slots = xcalloc(set->nslots, sizeof(*set->slots));
    return set;
}


void
dedup_free(struct dedup *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->len; i++)
        free(set->entries[(set->head + i) % set->max].ses_message_id);
    free(set->entries);
    free(set->slots);
    free(set);
}


/*
 * Returns the slot that contains id, or the free slot where a linear probe
 * for id ends. The table is never full, so the probe always ends.
 */
static size_t
dedup_slot_of(const struct dedup *set, const char *id)
{
    size_t mask = set->nslots - 1;
    size_t slot = (size_t)dedup_hash(id) & mask;

    while (set->slots[slot] != 0 &&
           strcmp(set->entries[set->slots[slot] - 1].id, id) != 0)
        slot = (slot + 1) & mask;
    return slot;
}


/*
 * Empties slot and moves later entries of its probe run back, so that
 * every entry stays reachable from its home slot without tombstones.
 */
static void
dedup_remove_slot(struct dedup *set, size_t slot)
{
    size_t mask = set->nslots - 1;
    size_t hole = slot;
    size_t next = slot;

    set->slots[hole] = 0;
    for (;;) {
        size_t home;
        int    stays;

        next = (next + 1) & mask;
        if (set->slots[next] == 0)
            return;
        home = (size_t)dedup_hash(set->entries[set->slots[next] - 1].id) &
               mask;

        /* It stays when its home lies cyclically in (hole, next]. */
        if (next > hole)
            stays = home > hole && home <= next;
        else
            stays = home > hole || home <= next;
        if (stays)
            continue;
        set->slots[hole] = set->slots[next];
        set->slots[next] = 0;
        hole = next;
    }
}


static void
dedup_drop_oldest(struct dedup *set)
{
    struct dedup_entry *oldest = &set->entries[set->head];

    dedup_remove_slot(set, dedup_slot_of(set, oldest->id));
    free(oldest->ses_message_id);
    memset(oldest, 0, sizeof(*oldest));
    set->head = (set->head + 1) % set->max;
    set->len--;
}


void
dedup_add(struct dedup *set, const char *id, const char *ses_message_id)
{
    size_t              slot = dedup_slot_of(set, id);
    size_t              index;
    struct dedup_entry *e;

    if (set->slots[slot] != 0) {
        e = &set->entries[set->slots[slot] - 1];
        free(e->ses_message_id);
        e->ses_message_id = xstrdup(ses_message_id);
        e->recorded = 0;
        return;
    }

    if (set->len == set->max) {
        dedup_drop_oldest(set);
        slot = dedup_slot_of(set, id);
    }
    index = (set->head + set->len) % set->max;
    e = &set->entries[index];
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->recorded = 0;
    e->ses_message_id = xstrdup(ses_message_id);
    set->slots[slot] = (uint32_t)(index + 1);
    set->len++;
}


void
dedup_mark_recorded(struct dedup *set, const char *id)
{
    size_t              slot = dedup_slot_of(set, id);
    struct dedup_entry *e;

    if (set->slots[slot] == 0)
        return;
    e = &set->entries[set->slots[slot] - 1];
    e->recorded = 1;
    free(e->ses_message_id);
    e->ses_message_id = NULL;
}


const struct dedup_entry *
dedup_find(const struct dedup *set, const char *id)
{
    size_t slot = dedup_slot_of(set, id);

    return set->slots[slot] != 0 ? &set->entries[set->slots[slot] - 1]
                                 : NULL;
}


size_t
dedup_len(const struct dedup *set)
{
    return set->len;
}
