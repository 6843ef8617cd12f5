/*
 * SPDX-License-Identifier: ISC
 *
 * A small JSON writer for listq --json (json.c).
 */
#ifndef LISTQ_JSON_H
#define LISTQ_JSON_H

#include <stdbool.h>
#include <stdio.h>

#define JSON_DEPTH	16

struct json {
	FILE		*f;
	int		 depth;
	bool		 more[JSON_DEPTH];	/* a value already written */
	char		 close[JSON_DEPTH];
};

/*
 * Every call takes the member's key, or NULL inside an array and at the
 * top.  json_end closes the innermost object or array; at depth 0 it
 * ends the document with a newline.
 */
void	json_start(struct json *j, FILE *f);
void	json_object(struct json *j, const char *key);
void	json_array(struct json *j, const char *key);
void	json_end(struct json *j);
/* v NULL writes null. */
void	json_str(struct json *j, const char *key, const char *v);
void	json_int(struct json *j, const char *key, long long v);
void	json_num(struct json *j, const char *key, double v);
void	json_bool(struct json *j, const char *key, bool v);
void	json_null(struct json *j, const char *key);

#endif
