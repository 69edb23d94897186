/*
 * ctl_table: plain-text tables for ferryctl's output.
 *
 * Columns are separated by two spaces and padded to their widest cell,
 * counted in UTF-8 characters; a column marked right-aligned suits
 * numbers. A line of dashes separates the header from the rows.
 */
#ifndef FERRY_CTL_TABLE_H
#define FERRY_CTL_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct ctl_table;

/* headers has ncols entries; right[i] right-aligns column i. */
struct ctl_table *ctl_table_new(const char *const *headers,
                                const bool *right, size_t ncols);
void ctl_table_free(struct ctl_table *t);

/* Starts a new row; the following ctl_table_cell() calls fill it. */
void ctl_table_row(struct ctl_table *t);

/* Appends one cell to the current row; extra cells are an error. */
int ctl_table_cell(struct ctl_table *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

size_t ctl_table_rows(const struct ctl_table *t);

/* Returns the table as a malloc'd string the caller frees. */
char *ctl_table_format(const struct ctl_table *t);

void ctl_table_print(const struct ctl_table *t, FILE *out);

#endif
