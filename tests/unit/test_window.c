/*
 * Unit tests of the commit window of one partition: which offset may be
 * committed, what the commit metadata lists, and what a next owner loads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "window.h"

#define END (-1)                /* ends an offset list or a range list */

struct commit_case {
    const char         *name;
    int64_t             pushed[24];     /* consumed offsets, then END */
    struct window_range marks[8];       /* done marks in order, then END */
    int64_t             commit;         /* expected offset to commit */
    size_t              left;           /* expected window_len() after */
    const char         *metadata;       /* expected window_format_done() */
};

static const struct commit_case commit_cases[] = {
    { "nothing pushed", { END }, { { END, END } }, -1, 0, "ferry-done=" },
    { "none done", { 0, 1, 2, END }, { { END, END } }, 0, 3,
      "ferry-done=" },
    { "all done", { 0, 1, 2, END }, { { 0, 2 }, { END, END } }, 3, 0,
      "ferry-done=" },
    { "front done", { 10, 11, 12, 13, 14, END },
      { { 10, 11 }, { END, END } }, 12, 3, "ferry-done=" },
    { "first not done holds commit", { 0, 1, 2, 3, 4, 5, END },
      { { 2, 3 }, { 5, 5 }, { END, END } }, 0, 6, "ferry-done=2-3,5" },

    /* Messages finish in any order; the commit moves once the gap closes. */
    { "out of order marks", { 0, 1, 2, 3, 4, END },
      { { 3, 3 }, { 1, 1 }, { 0, 0 }, { 4, 4 }, { END, END } }, 2, 3,
      "ferry-done=3-4" },
    { "out of order, gap closed", { 0, 1, 2, 3, 4, END },
      { { 4, 4 }, { 2, 2 }, { 3, 3 }, { 1, 1 }, { 0, 0 }, { END, END } },
      5, 0, "ferry-done=" },
    { "marks repeated", { 0, 1, 2, END },
      { { 1, 1 }, { 1, 1 }, { 0, 1 }, { END, END } }, 2, 1,
      "ferry-done=" },
    { "marks outside window", { 3, 4, END },
      { { 0, 2 }, { 7, 9 }, { END, END } }, 3, 2, "ferry-done=" },

    /*
     * Offsets with gaps, as after compaction or transaction markers. The
     * commit jumps over missing offsets, and ranges in the metadata join
     * consecutive offsets only.
     */
    { "gaps, front done", { 5, 6, 9, 10, 14, END },
      { { 5, 6 }, { END, END } }, 9, 3, "ferry-done=" },
    { "gaps, all done", { 5, 6, 9, 10, 14, END },
      { { 5, 14 }, { END, END } }, 15, 0, "ferry-done=" },
    { "gaps, range across gap", { 5, 6, 9, 10, 14, END },
      { { 9, 14 }, { END, END } }, 5, 5, "ferry-done=9-10,14" },
    { "gaps, marks between offsets", { 5, 6, 9, 10, 14, END },
      { { 7, 8 }, { 11, 13 }, { END, END } }, 5, 5, "ferry-done=" },

    /*
     * Chunks of message A at 3, 4 and 6, interleaved with message B at 5.
     * Each record is marked on its own, so B's offset stays not done.
     */
    { "chunks, other message pending", { 3, 4, 5, 6, END },
      { { 3, 3 }, { 4, 4 }, { 6, 6 }, { END, END } }, 5, 2,
      "ferry-done=6" },
    { "chunks pending, other done", { 3, 4, 5, 6, END },
      { { 5, 5 }, { END, END } }, 3, 4, "ferry-done=5" },
    { "chunks and other done", { 3, 4, 5, 6, END },
      { { 5, 5 }, { 3, 3 }, { 4, 4 }, { 6, 6 }, { END, END } }, 7, 0,
      "ferry-done=" },
};

struct push_case {
    const char *name;
    const char *metadata;       /* loaded before the pushes, or NULL */
    int64_t     pushed[12];     /* then END */
    int         results[12];    /* expected window_push() results */
};

static const struct push_case push_cases[] = {
    { "in order", NULL, { 0, 1, 2, END }, { 0, 0, 0 } },
    { "repeats rejected", NULL, { 0, 1, 1, 0, 2, END },
      { 0, 0, -1, -1, 0 } },
    { "gaps accepted", NULL, { 0, 5, 9, END }, { 0, 0, 0 } },
    { "backwards after gap", NULL, { 0, 5, 3, 6, END }, { 0, 0, -1, 0 } },
    { "first push anywhere", NULL, { 1000, 1001, END }, { 0, 0 } },
    { "done before", "ferry-done=5-7,9",
      { 4, 5, 6, 7, 8, 9, 10, END }, { 0, 1, 1, 1, 0, 1, 0 } },
    { "done before, with gaps", "ferry-done=5-7,9",
      { 4, 6, 8, 10, END }, { 0, 1, 0, 0 } },
    { "done before, at start", "ferry-done=0", { 0, 1, END }, { 1, 0 } },
};

struct load_case {
    const char         *name;
    const char         *metadata;
    int                 len;            /* -1: strlen(metadata) */
    int                 rc;
    size_t              nranges;
    struct window_range ranges[4];
};

static const struct load_case load_cases[] = {
    { "null", NULL, 0, 0, 0, { { 0, 0 } } },
    { "empty", "", 0, 0, 0, { { 0, 0 } } },
    { "prefix only", "ferry-done=", -1, 0, 0, { { 0, 0 } } },
    { "single offset", "ferry-done=7", -1, 0, 1, { { 7, 7 } } },
    { "ranges and offsets", "ferry-done=5-7,9,12-20", -1, 0, 3,
      { { 5, 7 }, { 9, 9 }, { 12, 20 } } },
    { "length ends early", "ferry-done=12,13", 12, 0, 1, { { 1, 1 } } },

    { "other prefix", "done=1", -1, -1, 0, { { 0, 0 } } },
    { "prefix cut short", "ferry-d", -1, -1, 0, { { 0, 0 } } },
    { "range without end", "ferry-done=5-", -1, -1, 0, { { 0, 0 } } },
    { "range reversed", "ferry-done=7-5", -1, -1, 0, { { 0, 0 } } },
    { "not a number", "ferry-done=a", -1, -1, 0, { { 0, 0 } } },
    { "empty item", "ferry-done=1,,2", -1, -1, 0, { { 0, 0 } } },
    { "wrong separator", "ferry-done=1;2", -1, -1, 0, { { 0, 0 } } },
    { "out of range", "ferry-done=99999999999999999999", -1, -1, 0,
      { { 0, 0 } } },
};

struct format_case {
    const char *name;
    size_t      size;           /* of the buffer */
    const char *metadata;
    size_t      left_out;
};

/* Offsets 0..9 with 1, 3, 4 and 9 done: "ferry-done=1,3-4,9" has 18 bytes. */
static const struct format_case format_cases[] = {
    { "fits", 64, "ferry-done=1,3-4,9", 0 },
    { "exact fit", 19, "ferry-done=1,3-4,9", 0 },
    { "last range cut", 18, "ferry-done=1,3-4", 1 },
    { "later ranges cut", 16, "ferry-done=1", 3 },
    { "prefix only fits", 12, "ferry-done=", 4 },
};


static void
push_all(struct window *w, const int64_t *offsets)
{
    for (size_t i = 0; offsets[i] != END; i++)
        window_push(w, offsets[i]);
}


static void
mark_all(struct window *w, const struct window_range *marks)
{
    for (size_t i = 0; marks[i].first != END; i++)
        window_mark_done(w, marks[i].first, marks[i].last);
}


static void
commit_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(commit_cases) / sizeof(*commit_cases);
         i++) {
        const struct commit_case *c = &commit_cases[i];
        struct window             w;
        char                      metadata[256];

        print_message("case %s\n", c->name);
        window_init(&w);
        push_all(&w, c->pushed);
        mark_all(&w, c->marks);
        assert_int_equal(window_commit_offset(&w), c->commit);
        assert_int_equal(window_len(&w), c->left);
        assert_int_equal(window_format_done(&w, metadata, sizeof(metadata)),
                         0);
        assert_string_equal(metadata, c->metadata);

        /* Asking again changes nothing. */
        assert_int_equal(window_commit_offset(&w), c->commit);
        assert_int_equal(window_len(&w), c->left);
        window_fini(&w);
    }
}


static void
push_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(push_cases) / sizeof(*push_cases); i++) {
        const struct push_case *c = &push_cases[i];
        struct window           w;

        print_message("case %s\n", c->name);
        window_init(&w);
        if (c->metadata != NULL)
            assert_int_equal(window_load_done(&w, c->metadata,
                                              strlen(c->metadata)), 0);
        for (size_t j = 0; c->pushed[j] != END; j++) {
            print_message("  push %lld\n", (long long)c->pushed[j]);
            assert_int_equal(window_push(&w, c->pushed[j]), c->results[j]);
        }
        window_fini(&w);
    }
}


/* An offset done by an earlier owner is pushed as done. */
static void
done_before_commits(void **state)
{
    struct window w;

    (void)state;
    window_init(&w);
    assert_int_equal(window_load_done(&w, "ferry-done=5-6", 14), 0);
    push_all(&w, (const int64_t[]){ 4, 5, 6, 7, END });
    assert_int_equal(window_commit_offset(&w), 4);
    window_mark_done(&w, 4, 4);
    assert_int_equal(window_commit_offset(&w), 7);
    assert_int_equal(window_len(&w), 1);
    window_fini(&w);
}


static void
load_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(load_cases) / sizeof(*load_cases); i++) {
        const struct load_case *c = &load_cases[i];
        size_t                  len = c->len >= 0 ? (size_t)c->len
                                                  : strlen(c->metadata);
        struct window           w;

        print_message("case %s\n", c->name);
        window_init(&w);
        assert_int_equal(window_load_done(&w, c->metadata, len), c->rc);
        assert_int_equal(w.ndone_before, c->nranges);
        for (size_t j = 0; j < c->nranges; j++) {
            assert_int_equal(w.done_before[j].first, c->ranges[j].first);
            assert_int_equal(w.done_before[j].last, c->ranges[j].last);
        }
        window_fini(&w);
    }
}


/* Loading new metadata, valid or not, replaces what was loaded before. */
static void
load_replaces_ranges(void **state)
{
    struct window w;

    (void)state;
    window_init(&w);
    assert_int_equal(window_load_done(&w, "ferry-done=1-3", 14), 0);
    assert_int_equal(w.ndone_before, 1);
    assert_int_equal(window_load_done(&w, "ferry-done=8", 12), 0);
    assert_int_equal(w.ndone_before, 1);
    assert_int_equal(w.done_before[0].first, 8);
    assert_int_equal(window_load_done(&w, "ferry-done=x", 12), -1);
    assert_int_equal(w.ndone_before, 0);
    assert_null(w.done_before);
    window_fini(&w);
}


static void
format_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(format_cases) / sizeof(*format_cases);
         i++) {
        const struct format_case *c = &format_cases[i];
        struct window             w;
        char                      metadata[64];

        print_message("case %s\n", c->name);
        window_init(&w);
        push_all(&w, (const int64_t[]){ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, END });
        mark_all(&w, (const struct window_range[]){
                         { 1, 1 }, { 3, 4 }, { 9, 9 }, { END, END } });
        assert_true(c->size <= sizeof(metadata));
        assert_int_equal(window_format_done(&w, metadata, c->size),
                         c->left_out);
        assert_string_equal(metadata, c->metadata);
        window_fini(&w);
    }
}


/*
 * What one owner writes, the next loads: after the committed offset, the
 * new owner pushes exactly the done offsets as done.
 */
static void
format_load_round_trip(void **state)
{
    static const int64_t pushed[] = { 0, 1, 2, 3, 4, 5, 7, 8, 11, 12, 13,
                                      END };
    struct window        first, next;
    char                 metadata[128];
    int64_t              commit;

    (void)state;
    window_init(&first);
    push_all(&first, pushed);
    mark_all(&first, (const struct window_range[]){
                         { 0, 1 }, { 3, 3 }, { 5, 8 }, { 12, 12 },
                         { END, END } });
    commit = window_commit_offset(&first);
    assert_int_equal(commit, 2);
    assert_int_equal(window_format_done(&first, metadata, sizeof(metadata)),
                     0);
    assert_string_equal(metadata, "ferry-done=3,5,7-8,12");

    window_init(&next);
    assert_int_equal(window_load_done(&next, metadata, strlen(metadata)), 0);
    for (size_t i = 0; pushed[i] != END; i++) {
        int done = pushed[i] == 3 || pushed[i] == 5 || pushed[i] == 7 ||
                   pushed[i] == 8 || pushed[i] == 12;

        if (pushed[i] < commit)
            continue;
        print_message("  push %lld\n", (long long)pushed[i]);
        assert_int_equal(window_push(&next, pushed[i]), done);
    }
    window_fini(&first);
    window_fini(&next);
}


/*
 * The ring buffer starts at 64 entries. It grows while its head is in the
 * middle of the array and must keep the offsets in order.
 */
static void
ring_grows_after_wrap(void **state)
{
    struct window w;

    (void)state;
    window_init(&w);
    for (int64_t off = 0; off < 64; off++)
        assert_int_equal(window_push(&w, off), 0);
    window_mark_done(&w, 0, 49);
    assert_int_equal(window_commit_offset(&w), 50);
    assert_int_equal(window_len(&w), 14);

    for (int64_t off = 64; off < 200; off++)
        assert_int_equal(window_push(&w, off), 0);
    assert_int_equal(window_len(&w), 150);
    assert_int_equal(window_commit_offset(&w), 50);

    window_mark_done(&w, 50, 150);
    assert_int_equal(window_commit_offset(&w), 151);
    assert_int_equal(window_len(&w), 49);
    window_mark_done(&w, 160, 160);
    window_mark_done(&w, 199, 199);
    assert_int_equal(window_commit_offset(&w), 151);

    window_mark_done(&w, 151, 198);
    assert_int_equal(window_commit_offset(&w), 200);
    assert_int_equal(window_len(&w), 0);
    window_fini(&w);
}


static void
fini_resets(void **state)
{
    struct window w;

    (void)state;
    window_init(&w);
    assert_int_equal(window_load_done(&w, "ferry-done=0", 12), 0);
    push_all(&w, (const int64_t[]){ 0, 1, 2, END });
    window_fini(&w);

    assert_int_equal(window_commit_offset(&w), -1);
    assert_int_equal(window_len(&w), 0);
    assert_int_equal(w.ndone_before, 0);
    assert_int_equal(window_push(&w, 0), 0);
    window_fini(&w);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(commit_table),
        cmocka_unit_test(push_table),
        cmocka_unit_test(done_before_commits),
        cmocka_unit_test(load_table),
        cmocka_unit_test(load_replaces_ranges),
        cmocka_unit_test(format_table),
        cmocka_unit_test(format_load_round_trip),
        cmocka_unit_test(ring_grows_after_wrap),
        cmocka_unit_test(fini_resets),
    };

    return cmocka_run_group_tests_name("window", tests, NULL, NULL);
}
