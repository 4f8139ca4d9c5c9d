/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * User-space stand-ins for the kernel types and helpers that pvkit's generated
 * protocol headers (drivers/<name>/<name>_proto.h) and the backends' validators
 * (pvblk_validate.c, pvnet_validate.c) use, so they compile on the host for
 * tests and fuzzing. Not part of the driver sources.
 */
#ifndef PVKIT_USER_H
#define PVKIT_USER_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int8_t s8;
typedef int16_t s16;
typedef int32_t s32;
typedef int64_t s64;

#ifndef __packed
#define __packed __attribute__((__packed__))
#endif

#ifndef sizeof_field
#define sizeof_field(TYPE, MEMBER) sizeof((((TYPE *)0)->MEMBER))
#endif

#endif /* PVKIT_USER_H */
