/* Hostile input at the C ABI boundary: NULL handles and pointers, invalid
 * UTF-8, freed handles used again, buffers too small, bad enum values. Every
 * call must return its documented status, never crash; run under valgrind by
 * client-sdk/ffi/tests/engines.rs (no errors, no definite leaks).
 *   hostile   (no gateway needed) */
#include "outpost.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures = 0;

static void expect(OutpostStatus got, OutpostStatus want, const char *what) {
    if (got != want) {
        fprintf(stderr, "HOSTILE FAILED: %s: got %s, want %s\n", what, outpost_status_name(got), outpost_status_name(want));
        failures++;
    }
}
#define EXPECT(call, want) expect((call), (want), #call)
#define S(str) (const uint8_t *)(str), strlen(str)

int main(void) {
    uint64_t req = 0;
    size_t n = 0, len = 0;
    uint8_t small[4];
    OutpostEvent evs[4];
    const uint8_t bad_utf8[] = {0x66, 0xff, 0xfe, 0x6f};

    /* Handles never issued, 0, and NULL out-parameters. */
    EXPECT(outpost_poll(0, evs, 4, &n), OUTPOST_STATUS_INVALID_HANDLE);
    EXPECT(outpost_poll(123456789, evs, 4, &n), OUTPOST_STATUS_INVALID_HANDLE);
    EXPECT(outpost_state_get(0, S("x"), &req), OUTPOST_STATUS_INVALID_HANDLE);
    EXPECT(outpost_client_close(0), OUTPOST_STATUS_INVALID_HANDLE);
    EXPECT(outpost_client_free(0), OUTPOST_STATUS_OK);
    EXPECT(outpost_config_free(0), OUTPOST_STATUS_OK);
    EXPECT(outpost_config_new(NULL), OUTPOST_STATUS_NULL_POINTER);
    EXPECT(outpost_client_connect(0, NULL), OUTPOST_STATUS_NULL_POINTER);
    OutpostClient c = 0;
    EXPECT(outpost_client_connect(0, &c), OUTPOST_STATUS_INVALID_HANDLE);

    /* The last error is kept per thread and can be read in pieces. */
    EXPECT(outpost_last_error(NULL, 0, &len), OUTPOST_STATUS_BUFFER_TOO_SMALL);
    if (len == 0) { fprintf(stderr, "HOSTILE FAILED: empty last error\n"); failures++; }
    EXPECT(outpost_last_error(small, sizeof small, &len), OUTPOST_STATUS_BUFFER_TOO_SMALL);
    char *msg = malloc(len);
    EXPECT(outpost_last_error((uint8_t *)msg, len, &len), OUTPOST_STATUS_OK);
    free(msg);
    EXPECT(outpost_last_error(NULL, 0, NULL), OUTPOST_STATUS_NULL_POINTER);
    /* A caller mistake carries no retry hint. */
    if (outpost_last_retry_after_ms() != 0) {
        fprintf(stderr, "HOSTILE FAILED: retry hint %u on a boundary error\n", outpost_last_retry_after_ms());
        failures++;
    }

    /* A configuration: bad strings, bad values, incomplete. */
    OutpostConfig cfg = 0;
    EXPECT(outpost_config_new(&cfg), OUTPOST_STATUS_OK);
    EXPECT(outpost_config_add_gateway(cfg, NULL, 5), OUTPOST_STATUS_NULL_POINTER);
    EXPECT(outpost_config_add_gateway(cfg, bad_utf8, sizeof bad_utf8), OUTPOST_STATUS_INVALID_UTF8);
    EXPECT(outpost_config_add_gateway(cfg, S("not an address")), OUTPOST_STATUS_INVALID_ARGUMENT);
    EXPECT(outpost_config_add_gateway(cfg, NULL, 0), OUTPOST_STATUS_INVALID_ARGUMENT);
    EXPECT(outpost_config_set_device(cfg, S("dev"), bad_utf8, sizeof bad_utf8), OUTPOST_STATUS_INVALID_UTF8);
    EXPECT(outpost_config_set_reconnect(cfg, 1, 100, 10, 2.0, 0), OUTPOST_STATUS_INVALID_ARGUMENT);
    EXPECT(outpost_config_set_reconnect(cfg, 1, 10, 100, 0.5, 0), OUTPOST_STATUS_INVALID_ARGUMENT);
    EXPECT(outpost_config_set_request_timeout_ms(cfg, 0), OUTPOST_STATUS_INVALID_ARGUMENT);
    EXPECT(outpost_config_set_event_capacity(cfg, 0), OUTPOST_STATUS_INVALID_ARGUMENT);
    EXPECT(outpost_client_connect(cfg, &c), OUTPOST_STATUS_CONFIG); /* no CA, no credentials */
    EXPECT(outpost_config_add_gateway(cfg, S("127.0.0.1:9")), OUTPOST_STATUS_OK);
    EXPECT(outpost_config_set_ca_pem(cfg, S("not a certificate")), OUTPOST_STATUS_OK);
    EXPECT(outpost_config_set_device(cfg, S("hostile-device"), S("hostile-secret-0123456789")), OUTPOST_STATUS_OK);
    EXPECT(outpost_config_set_request_timeout_ms(cfg, 500), OUTPOST_STATUS_OK);

    /* A client whose connect fails (the CA is garbage): CLOSED arrives by poll. */
    EXPECT(outpost_client_connect(cfg, &c), OUTPOST_STATUS_OK);
    EXPECT(outpost_config_free(cfg), OUTPOST_STATUS_OK);
    EXPECT(outpost_config_free(cfg), OUTPOST_STATUS_INVALID_HANDLE);
    EXPECT(outpost_config_set_telemetry(cfg, 1), OUTPOST_STATUS_INVALID_HANDLE);
    EXPECT(outpost_state_get(c, bad_utf8, sizeof bad_utf8, &req), OUTPOST_STATUS_INVALID_UTF8);
    EXPECT(outpost_state_get(c, S("x"), NULL), OUTPOST_STATUS_NULL_POINTER);
    EXPECT(outpost_state_set(c, S("x"), 0, NULL, 3, &req), OUTPOST_STATUS_NULL_POINTER);
    OutpostAsset bad_kind = {7, 0, (const uint8_t *)"gold", 4, 1};
    EXPECT(outpost_inventory_grant(c, NULL, 0, S("src"), &bad_kind, 1, &req), OUTPOST_STATUS_INVALID_ARGUMENT);
    OutpostAsset bad_id = {OUTPOST_ASSET_ITEM, 0, bad_utf8, sizeof bad_utf8, 1};
    EXPECT(outpost_inventory_grant(c, NULL, 0, S("src"), &bad_id, 1, &req), OUTPOST_STATUS_INVALID_UTF8);
    EXPECT(outpost_inventory_grant(c, NULL, 0, S("src"), NULL, 2, &req), OUTPOST_STATUS_NULL_POINTER);
    EXPECT(outpost_matchmaking_queue(c, S("duel"), NULL, NULL, NULL, 3, 0, &req), OUTPOST_STATUS_NULL_POINTER);
    uint8_t flag = 0;
    EXPECT(outpost_flag_bool(c, S("f"), 0, &flag), OUTPOST_STATUS_NOT_READY);
    EXPECT(outpost_poll(c, NULL, 4, &n), OUTPOST_STATUS_NULL_POINTER);
    EXPECT(outpost_poll(c, evs, 4, NULL), OUTPOST_STATUS_NULL_POINTER);
    EXPECT(outpost_poll(c, NULL, 0, &n), OUTPOST_STATUS_OK);
    EXPECT(outpost_new_idempotency_key(small, sizeof small, &len), OUTPOST_STATUS_BUFFER_TOO_SMALL);
    if (len != 32) { fprintf(stderr, "HOSTILE FAILED: key length %zu\n", len); failures++; }
    /* A request before the (failing) login: answered with the login's error. */
    EXPECT(outpost_state_get(c, S("x"), &req), OUTPOST_STATUS_OK);
    int closed = 0, answered = 0;
    for (int i = 0; i < 2000 && !(closed && answered); i++) {
        EXPECT(outpost_poll(c, evs, 1, &n), OUTPOST_STATUS_OK); /* one at a time */
        for (size_t k = 0; k < n; k++) {
            if (evs[k].kind == OUTPOST_EVENT_KIND_CLOSED) {
                closed = 1;
                expect(evs[k].status, OUTPOST_STATUS_CONFIG, "closed status");
            }
            if (evs[k].kind == OUTPOST_EVENT_KIND_RESPONSE && evs[k].request_id == req) {
                answered = 1;
                expect(evs[k].status, OUTPOST_STATUS_CONFIG, "response status");
            }
        }
        struct timespec ts = {0, 5000000L};
        nanosleep(&ts, NULL);
    }
    if (!closed || !answered) { fprintf(stderr, "HOSTILE FAILED: closed=%d answered=%d\n", closed, answered); failures++; }
    EXPECT(outpost_client_player_id(c, small, sizeof small, &len), OUTPOST_STATUS_CONFIG);

    /* Freed: every use is refused, a second free too. */
    EXPECT(outpost_client_free(c), OUTPOST_STATUS_OK);
    EXPECT(outpost_client_free(c), OUTPOST_STATUS_INVALID_HANDLE);
    EXPECT(outpost_poll(c, evs, 4, &n), OUTPOST_STATUS_INVALID_HANDLE);
    EXPECT(outpost_state_get(c, S("x"), &req), OUTPOST_STATUS_INVALID_HANDLE);
    EXPECT(outpost_telemetry_report_latency_us(c, 1), OUTPOST_STATUS_INVALID_HANDLE);
    if (strcmp(outpost_status_name(12345), "OUTPOST_STATUS_UNKNOWN") != 0) failures++;

    if (failures) return 1;
    printf("HOSTILE OK\n");
    return 0;
}
