/*
 * csvstats: per-column statistics for every CSV file in a directory.
 *
 * Reads every regular file named *.csv in /inputs (or argv[1]), in name
 * order. The first record of each file is its header. A column is numeric
 * when every non-empty value in it parses as a decimal number; other
 * columns are skipped. For each file and numeric column, writes
 * count,min,max,mean to /outputs/stats.csv, followed by one "ALL" row per
 * column name combining every file (a name is combined only if it is
 * numeric everywhere it appears). A one-line summary goes to stdout,
 * errors go to stderr with exit status 1.
 *
 * Parsing follows RFC 4180: quoted fields may contain commas, newlines and
 * doubled quotes; records end with LF, CRLF or a lone CR. Records and
 * fields may be of any length. Blank lines are skipped, missing trailing
 * fields count as empty and extra fields are ignored.
 *
 * Build: zig cc --target=wasm32-wasi -O2 -s -o main.wasm main.c
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define OUTPUT_PATH "/outputs/stats.csv"

/* ---------------------------------------------------------------- utils */

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("csvstats: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(xrealloc(NULL, n), s, n);
}

/* Growable byte buffer holding one field. */
typedef struct {
    char *data;
    size_t len, cap;
} Buf;

static void buf_push(Buf *b, char c) {
    if (b->len + 1 >= b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->data = xrealloc(b->data, b->cap);
    }
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

/* One parsed record: an array of NUL-terminated fields. */
typedef struct {
    char **fields;
    size_t count, cap;
} Record;

static void record_clear(Record *r) {
    for (size_t i = 0; i < r->count; i++)
        free(r->fields[i]);
    r->count = 0;
}

static void record_push(Record *r, Buf *field) {
    if (r->count == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->fields = xrealloc(r->fields, r->cap * sizeof *r->fields);
    }
    r->fields[r->count++] = xstrdup(field->data ? field->data : "");
    field->len = 0;
    if (field->data)
        field->data[0] = '\0';
}

/* ------------------------------------------------------------ CSV input */

/*
 * Read the next record from f into rec. Returns 1 if a record was read,
 * 0 at end of file. Blank lines are skipped. An unterminated quoted field
 * at end of file is accepted as if it were closed.
 */
static int read_record(FILE *f, Record *rec, Buf *field, const char *name) {
    record_clear(rec);
    for (;;) {
        int c = getc(f);
        int in_quotes = 0, quoted = 0;

        if (c == EOF)
            return 0;
        if (c == '\n')
            continue; /* blank line (LF) */
        if (c == '\r') {
            int d = getc(f);
            if (d != '\n' && d != EOF)
                ungetc(d, f);
            continue; /* blank line (CR or CRLF) */
        }

        for (;; c = getc(f)) {
            if (in_quotes) {
                if (c == EOF) {
                    fprintf(stderr, "csvstats: %s: unterminated quoted field\n",
                            name);
                    break;
                }
                if (c == '"') {
                    int d = getc(f);
                    if (d == '"') {
                        buf_push(field, '"'); /* "" is an escaped quote */
                        continue;
                    }
                    in_quotes = 0;
                    c = d; /* fall through to handle the next character */
                } else {
                    buf_push(field, (char)c);
                    continue;
                }
            }
            if (c == EOF || c == '\n')
                break;
            if (c == '\r') {
                int d = getc(f);
                if (d != '\n' && d != EOF)
                    ungetc(d, f);
                break;
            }
            if (c == ',') {
                record_push(rec, field);
                quoted = 0;
            } else if (c == '"' && field->len == 0 && !quoted) {
                in_quotes = quoted = 1; /* opening quote */
            } else {
                buf_push(field, (char)c); /* includes stray quotes */
            }
        }
        record_push(rec, field);
        return 1;
    }
}

/* Return s with leading and trailing ASCII whitespace removed, in place. */
static char *trim(char *s) {
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/*
 * Parse s as a plain decimal number: optional sign, digits with an
 * optional decimal point, optional exponent. Hex, "inf" and "nan", which
 * strtod would also accept, are rejected. Returns 1 on success.
 */
static int parse_number(const char *s, double *out) {
    const char *p = s;
    int digits = 0;
    if (*p == '+' || *p == '-')
        p++;
    while (isdigit((unsigned char)*p))
        p++, digits++;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p))
            p++, digits++;
    }
    if (!digits)
        return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p != '\0')
        return 0;
    *out = strtod(s, NULL);
    return isfinite(*out);
}

/* ----------------------------------------------------------- statistics */

typedef struct {
    char *name;
    long count;
    double min, max, sum;
    int has_text; /* a non-empty value that is not a number was seen */
} Column;

static void column_add(Column *c, double v) {
    if (c->count == 0 || v < c->min)
        c->min = v;
    if (c->count == 0 || v > c->max)
        c->max = v;
    c->sum += v;
    c->count++;
}

/* Columns combined across all files, in order of first appearance. */
static Column *all_cols;
static size_t all_count, all_cap;

static Column *all_column(const char *name) {
    for (size_t i = 0; i < all_count; i++)
        if (strcmp(all_cols[i].name, name) == 0)
            return &all_cols[i];
    if (all_count == all_cap) {
        all_cap = all_cap ? all_cap * 2 : 16;
        all_cols = xrealloc(all_cols, all_cap * sizeof *all_cols);
    }
    Column *c = &all_cols[all_count++];
    memset(c, 0, sizeof *c);
    c->name = xstrdup(name);
    return c;
}

/* ----------------------------------------------------------- CSV output */

/* Write s as a CSV field, quoting it if needed. */
static void write_field(FILE *out, const char *s) {
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

/* %.15g prints e.g. 21.5 as "21.5" while keeping nearly full precision. */
static void write_stats(FILE *out, const char *file, const Column *c) {
    write_field(out, file);
    fputc(',', out);
    write_field(out, c->name);
    fprintf(out, ",%ld,%.15g,%.15g,%.15g\n", c->count, c->min, c->max,
            c->sum / (double)c->count);
}

/* -------------------------------------------------------------- driver */

/*
 * Compute statistics for one file, write its rows to out and merge its
 * columns into the combined totals. Returns the number of data rows.
 */
static long process_file(const char *dir, const char *name, FILE *out) {
    char *path = xrealloc(NULL, strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot open %s: %s", path, strerror(errno));

    Record rec = {0};
    Buf field = {0};
    Column *cols = NULL;
    size_t ncols = 0;
    long rows = 0;

    if (read_record(f, &rec, &field, name)) {
        /* Header row; a UTF-8 byte order mark is dropped. */
        ncols = rec.count;
        cols = xrealloc(NULL, ncols * sizeof *cols);
        for (size_t i = 0; i < ncols; i++) {
            char *h = rec.fields[i];
            if (i == 0 && strncmp(h, "\xEF\xBB\xBF", 3) == 0)
                h += 3;
            memset(&cols[i], 0, sizeof cols[i]);
            cols[i].name = xstrdup(trim(h));
        }
        while (read_record(f, &rec, &field, name)) {
            rows++;
            for (size_t i = 0; i < ncols && i < rec.count; i++) {
                char *v = trim(rec.fields[i]);
                double d;
                if (*v == '\0' || cols[i].has_text)
                    continue;
                if (parse_number(v, &d))
                    column_add(&cols[i], d);
                else
                    cols[i].has_text = 1;
            }
        }
    }
    if (ferror(f))
        die("cannot read %s: %s", path, strerror(errno));
    fclose(f);

    for (size_t i = 0; i < ncols; i++) {
        Column *c = &cols[i], *all = all_column(c->name);
        if (c->has_text) {
            all->has_text = 1;
        } else if (c->count > 0) {
            write_stats(out, name, c);
            if (all->count == 0) {
                all->min = c->min;
                all->max = c->max;
            }
            all->min = fmin(all->min, c->min);
            all->max = fmax(all->max, c->max);
            all->sum += c->sum;
            all->count += c->count;
        }
        free(c->name);
    }

    record_clear(&rec);
    free(rec.fields);
    free(field.data);
    free(cols);
    free(path);
    return rows;
}

static int has_csv_suffix(const char *name) {
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".csv") == 0;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/inputs";

    /* Collect the names of regular *.csv files and sort them. */
    DIR *d = opendir(dir);
    if (!d)
        die("cannot read input directory %s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t nnames = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!has_csv_suffix(e->d_name))
            continue;
        char *path = xrealloc(NULL, strlen(dir) + strlen(e->d_name) + 2);
        struct stat st;
        sprintf(path, "%s/%s", dir, e->d_name);
        int regular = stat(path, &st) == 0 && S_ISREG(st.st_mode);
        free(path);
        if (!regular)
            continue;
        names = xrealloc(names, (nnames + 1) * sizeof *names);
        names[nnames++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (nnames == 0)
        die("no .csv files found in %s", dir);
    qsort(names, nnames, sizeof *names, cmp_names);

    FILE *out = fopen(OUTPUT_PATH, "w");
    if (!out)
        die("cannot create %s: %s", OUTPUT_PATH, strerror(errno));
    fputs("file,column,count,min,max,mean\n", out);

    long rows = 0;
    for (size_t i = 0; i < nnames; i++)
        rows += process_file(dir, names[i], out);

    size_t numeric = 0;
    for (size_t i = 0; i < all_count; i++) {
        if (!all_cols[i].has_text && all_cols[i].count > 0) {
            write_stats(out, "ALL", &all_cols[i]);
            numeric++;
        }
    }
    int write_failed = ferror(out);
    if (fclose(out) != 0 || write_failed)
        die("cannot write %s: %s", OUTPUT_PATH, strerror(errno));

    printf("%zu file%s, %ld row%s, %zu numeric column%s\n", nnames,
           nnames == 1 ? "" : "s", rows, rows == 1 ? "" : "s", numeric,
           numeric == 1 ? "" : "s");
    return 0;
}
