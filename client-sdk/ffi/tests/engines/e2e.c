/* End-to-end example and test of the C ABI against a real gateway:
 *   e2e <gateway host:port> <CA PEM file> <device prefix> <busy gateway> <its retry ms>
 * Two players log in, save state with compare-and-set, make a keyed grant
 * (and repeat it), read balances and flags, report telemetry, queue for a
 * duel and both receive the match; then close and free. A second gateway
 * (same CA) admits one session: a second login there is refused with
 * ServerBusy and its retry hint in the event's retry_after_ms, and in
 * outpost_last_retry_after_ms() after a synchronous call on that client.
 * Exit code 0 on success.
 * Built and run by client-sdk/ffi/tests/engines.rs. */
#include "outpost.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "C E2E FAILED: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void check(OutpostStatus s, const char *what) {
    if (s != OUTPOST_STATUS_OK) {
        char msg[512];
        size_t len = 0;
        outpost_last_error((uint8_t *)msg, sizeof msg - 1, &len);
        msg[len < sizeof msg ? len : 0] = 0;
        fail("%s: %s: %s", what, outpost_status_name(s), msg);
    }
}
#define CHECK(call) check((call), #call)
#define S(str) (const uint8_t *)(str), strlen(str)

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* What a player saw, copied out of polled events. */
typedef struct {
    OutpostClient client;
    int connected;
    int closed;
    /* The Closed event's fields (its text pointer is not kept). */
    OutpostEvent closed_ev;
    int match_found;
    uint64_t match_ticket;
    char match_json[1024];
    /* The last response awaited. */
    OutpostEvent resp;
    char text[256];
    char data[2048];
} Player;

static void copy(char *dst, size_t cap, const uint8_t *src, size_t len) {
    if (len >= cap) len = cap - 1;
    if (len) memcpy(dst, src, len);
    dst[len] = 0;
}

/* One frame: poll and note what arrived. Returns 1 if `want_id` was answered. */
static int frame(Player *p, uint64_t want_id) {
    OutpostEvent evs[16];
    size_t n = 0;
    int answered = 0;
    CHECK(outpost_poll(p->client, evs, 16, &n));
    for (size_t i = 0; i < n; i++) {
        const OutpostEvent *e = &evs[i];
        /* Only a refusal with a retry hint (a Closed event here) carries one. */
        if (e->kind != OUTPOST_EVENT_KIND_CLOSED && e->retry_after_ms != 0)
            fail("event kind %u with retry_after_ms %u", e->kind, e->retry_after_ms);
        switch (e->kind) {
        case OUTPOST_EVENT_KIND_CONNECTED:
            p->connected++;
            if (p->connected > 1 && e->num0 != 1) fail("reconnect did not resume the session");
            break;
        case OUTPOST_EVENT_KIND_CLOSED:
            p->closed = 1;
            p->closed_ev = *e;
            break;
        case OUTPOST_EVENT_KIND_MATCH_FOUND:
            p->match_found = 1;
            p->match_ticket = e->num0;
            copy(p->match_json, sizeof p->match_json, e->data, e->data_len);
            break;
        case OUTPOST_EVENT_KIND_RESPONSE:
            if (e->request_id == want_id) {
                p->resp = *e;
                copy(p->text, sizeof p->text, e->text, e->text_len);
                copy(p->data, sizeof p->data, e->data, e->data_len);
                answered = 1;
            }
            break;
        default: break;
        }
    }
    return answered;
}

/* Polls (as a game loop would, every 5 ms) until request `id` is answered. */
static const OutpostEvent *await_response(Player *p, uint64_t id) {
    for (int i = 0; i < 3000; i++) {
        if (frame(p, id)) return &p->resp;
        sleep_ms(5);
    }
    fail("no response to request %llu", (unsigned long long)id);
    return NULL;
}

static const OutpostEvent *await_ok(Player *p, uint64_t id, const char *what) {
    const OutpostEvent *e = await_response(p, id);
    if (e->status != OUTPOST_STATUS_OK)
        fail("%s: %s (code %u): %s", what, outpost_status_name(e->status), e->code, p->text);
    return e;
}

static void connect_player(Player *p, const char *addr, const char *pem, size_t pem_len, const char *device) {
    OutpostConfig cfg = 0;
    CHECK(outpost_config_new(&cfg));
    CHECK(outpost_config_add_gateway(cfg, S(addr)));
    CHECK(outpost_config_set_ca_pem(cfg, (const uint8_t *)pem, pem_len));
    CHECK(outpost_config_set_device(cfg, S(device), S("c-e2e-secret-0123456789")));
    CHECK(outpost_config_set_reconnect(cfg, 1, 50, 2000, 2.0, 0));
    CHECK(outpost_config_set_request_timeout_ms(cfg, 10000));
    memset(p, 0, sizeof *p);
    CHECK(outpost_client_connect(cfg, &p->client));
    CHECK(outpost_config_free(cfg)); /* the client does not need it any more */
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) fail("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) fail("cannot read %s", path);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 6) fail("usage: e2e <gateway> <ca.pem> <device prefix> <busy gateway> <its retry ms>");
    size_t pem_len = 0;
    char *pem = read_file(argv[2], &pem_len);
    char dev_a[128], dev_b[128], dev_c[128], dev_d[128];
    snprintf(dev_a, sizeof dev_a, "%s-a", argv[3]);
    snprintf(dev_b, sizeof dev_b, "%s-b", argv[3]);
    snprintf(dev_c, sizeof dev_c, "%s-c", argv[3]);
    snprintf(dev_d, sizeof dev_d, "%s-d", argv[3]);

    /* The busy gateway: `c` takes its only session; `d` is refused with
     * ServerBusy (code 300) and the wait it asks for as a field. */
    Player c, d;
    connect_player(&c, argv[4], pem, pem_len, dev_c);
    for (int i = 0; i < 3000 && !c.connected && !c.closed; i++) {
        frame(&c, 0);
        sleep_ms(5);
    }
    if (!c.connected) fail("login on the busy gateway did not complete");
    connect_player(&d, argv[4], pem, pem_len, dev_d);
    for (int i = 0; i < 3000 && !d.closed; i++) {
        frame(&d, 0);
        sleep_ms(5);
    }
    if (!d.closed || d.connected) fail("the login beyond the busy gateway's limit was not refused");
    unsigned long want_retry = strtoul(argv[5], NULL, 10);
    if (d.closed_ev.status != OUTPOST_STATUS_REJECTED || d.closed_ev.code != 300 ||
        d.closed_ev.retry_after_ms != want_retry)
        fail("refusal: %s, code %u, retry_after_ms %u (want REJECTED, 300, %lu)",
             outpost_status_name(d.closed_ev.status), d.closed_ev.code, d.closed_ev.retry_after_ms, want_retry);
    printf("refused with retry_after_ms %u\n", d.closed_ev.retry_after_ms);
    /* A synchronous call on the refused client returns REJECTED as well, its
     * hint in outpost_last_retry_after_ms() (NOT_READY until the connect task
     * records the refusal, just after the Closed event). */
    size_t no_len = 0;
    OutpostStatus refused = OUTPOST_STATUS_NOT_READY;
    for (int i = 0; i < 400 && refused == OUTPOST_STATUS_NOT_READY; i++) {
        refused = outpost_client_player_id(d.client, NULL, 0, &no_len);
        if (refused == OUTPOST_STATUS_NOT_READY) sleep_ms(5);
    }
    if (refused != OUTPOST_STATUS_REJECTED || outpost_last_retry_after_ms() != want_retry)
        fail("player id after the refusal: %s, last retry_after_ms %u (want REJECTED, %lu)",
             outpost_status_name(refused), outpost_last_retry_after_ms(), want_retry);
    /* The next failed call, without a hint, resets it. */
    if (outpost_client_player_id(0, NULL, 0, &no_len) != OUTPOST_STATUS_INVALID_HANDLE ||
        outpost_last_retry_after_ms() != 0)
        fail("a failed call without a hint left last retry_after_ms %u", outpost_last_retry_after_ms());
    CHECK(outpost_client_close(c.client));
    for (int i = 0; i < 1000 && !c.closed; i++) {
        frame(&c, 0);
        sleep_ms(5);
    }
    if (!c.closed || c.closed_ev.status != OUTPOST_STATUS_CLOSED || c.closed_ev.retry_after_ms != 0)
        fail("closing: %s, retry_after_ms %u", outpost_status_name(c.closed_ev.status), c.closed_ev.retry_after_ms);
    CHECK(outpost_client_free(c.client));
    CHECK(outpost_client_free(d.client));

    Player a, b;
    connect_player(&a, argv[1], pem, pem_len, dev_a);
    connect_player(&b, argv[1], pem, pem_len, dev_b);
    free(pem);

    /* Login: the first event of each client. */
    for (int i = 0; i < 3000 && !(a.connected && b.connected); i++) {
        frame(&a, 0);
        frame(&b, 0);
        sleep_ms(5);
    }
    if (!a.connected || !b.connected) fail("login did not complete");
    size_t id_len = 0;
    if (outpost_client_player_id(a.client, NULL, 0, &id_len) != OUTPOST_STATUS_BUFFER_TOO_SMALL || id_len == 0)
        fail("player id length query");
    char player[128];
    CHECK(outpost_client_player_id(a.client, (uint8_t *)player, sizeof player - 1, &id_len));
    player[id_len] = 0;
    printf("logged in as %s\n", player);

    /* State: read, compare-and-set, and a stale write that must conflict. */
    uint64_t req = 0;
    CHECK(outpost_state_get(a.client, S("profile"), &req));
    uint64_t version = await_ok(&a, req, "state get")->num0;
    const char *doc = "{\"level\":3}";
    CHECK(outpost_state_set(a.client, S("profile"), version, S(doc), &req));
    uint64_t saved = await_ok(&a, req, "state set")->num0;
    if (saved != version + 1) fail("state set: version %llu after %llu", (unsigned long long)saved, (unsigned long long)version);
    CHECK(outpost_state_set(a.client, S("profile"), version, S("{\"level\":1}"), &req));
    if (await_response(&a, req)->status != OUTPOST_STATUS_CONFLICT) fail("stale write did not conflict");
    CHECK(outpost_state_get(a.client, S("profile"), &req));
    const OutpostEvent *got = await_ok(&a, req, "state get");
    if (got->num0 != saved || strcmp(a.data, doc) != 0) fail("state get after set: %s", a.data);
    printf("state saved at version %llu\n", (unsigned long long)saved);

    /* Network loss: the SDK reconnects and resumes by itself; requests keep working. */
    int before = a.connected;
    CHECK(outpost_debug_kill_connection(a.client));
    for (int i = 0; i < 3000 && a.connected == before; i++) {
        frame(&a, 0);
        sleep_ms(5);
    }
    if (a.connected == before) fail("no reconnect after the connection was killed");
    uint32_t conn_state = 0;
    CHECK(outpost_client_state(a.client, &conn_state));
    if (conn_state != 1) fail("state after reconnect: %u", conn_state);

    /* Inventory: a keyed grant, repeated (a retry after a crash), then balances. */
    OutpostAsset gold = {OUTPOST_ASSET_CURRENCY, 0, (const uint8_t *)"gold", 4, 100};
    char key[64];
    size_t key_len = 0;
    CHECK(outpost_new_idempotency_key((uint8_t *)key, sizeof key, &key_len));
    CHECK(outpost_inventory_grant(a.client, (const uint8_t *)key, key_len, S("match_reward"), &gold, 1, &req));
    await_ok(&a, req, "grant");
    if (a.resp.num0 != 0 || strncmp(a.text, key, key_len) != 0) fail("first grant: duplicate=%llu key=%s", (unsigned long long)a.resp.num0, a.text);
    CHECK(outpost_inventory_grant(a.client, (const uint8_t *)key, key_len, S("match_reward"), &gold, 1, &req));
    await_ok(&a, req, "repeated grant");
    if (a.resp.num0 != 1) fail("repeated grant was applied again: %s", a.data);
    CHECK(outpost_inventory_balances(a.client, &req));
    await_ok(&a, req, "balances");
    if (!strstr(a.data, "\"id\":\"gold\"") || !strstr(a.data, "\"amount\":100")) fail("balances: %s", a.data);
    printf("balances %s\n", a.data);
    /* Consume with an SDK-made key; too much is a conflict; the ledger has all three. */
    OutpostAsset some = {OUTPOST_ASSET_CURRENCY, 0, (const uint8_t *)"gold", 4, 30};
    CHECK(outpost_inventory_consume(a.client, NULL, 0, S("shop"), &some, 1, &req));
    await_ok(&a, req, "consume");
    if (strlen(a.text) != 32 || !strstr(a.data, "\"delta\":-30")) fail("consume receipt: key %s, %s", a.text, a.data);
    OutpostAsset too_much = {OUTPOST_ASSET_CURRENCY, 0, (const uint8_t *)"gold", 4, 1000};
    CHECK(outpost_inventory_consume(a.client, NULL, 0, S("shop"), &too_much, 1, &req));
    if (await_response(&a, req)->status != OUTPOST_STATUS_CONFLICT) fail("overdraft did not conflict");
    CHECK(outpost_inventory_history(a.client, NULL, 0, 10, 1, &req));
    await_ok(&a, req, "history");
    if (!strstr(a.data, key) || !strstr(a.data, "\"kind\":\"consume\"")) fail("history: %s", a.data);

    /* Live flags (cached) and telemetry. */
    CHECK(outpost_live_start(a.client, &req));
    await_ok(&a, req, "live start");
    uint8_t flag = 7;
    CHECK(outpost_flag_bool(a.client, S("no-such-flag"), 1, &flag));
    if (flag != 1) fail("default flag value");
    size_t flags_len = 0;
    OutpostStatus fs = outpost_live_flags(a.client, NULL, 0, &flags_len);
    if (fs != OUTPOST_STATUS_BUFFER_TOO_SMALL || flags_len < 2) fail("flags length query: %s", outpost_status_name(fs));
    char *flags = malloc(flags_len + 1);
    CHECK(outpost_live_flags(a.client, (uint8_t *)flags, flags_len, &flags_len));
    flags[flags_len] = 0;
    if (flags[0] != '{') fail("flags: %s", flags);
    free(flags);
    CHECK(outpost_telemetry_report_error(a.client, S("c_e2e_error"), S("from the C test")));
    CHECK(outpost_telemetry_report_latency_us(a.client, 1500));
    CHECK(outpost_telemetry_flush(a.client, &req));
    await_ok(&a, req, "telemetry flush");
    if (a.resp.num0 < 2) fail("telemetry: %llu events acknowledged", (unsigned long long)a.resp.num0);

    /* Matchmaking: both queue for a duel and both get the match. */
    uint64_t ra = 0, rb = 0;
    CHECK(outpost_matchmaking_queue(a.client, S("duel"), NULL, NULL, NULL, 0, 0, &ra));
    await_ok(&a, ra, "queue a");
    if (a.resp.num1 != 1 && a.resp.num1 != 2) fail("ticket status %llu", (unsigned long long)a.resp.num1);
    CHECK(outpost_matchmaking_queue(b.client, S("duel"), NULL, NULL, NULL, 0, 0, &rb));
    await_ok(&b, rb, "queue b");
    for (int i = 0; i < 3000 && !(a.match_found && b.match_found); i++) {
        frame(&a, 0);
        frame(&b, 0);
        sleep_ms(5);
    }
    if (!a.match_found || !b.match_found) fail("no MatchFound push");
    if (!strstr(a.match_json, "\"queue\":\"duel\"")) fail("match: %s", a.match_json);
    printf("matched: %s\n", a.match_json);

    /* Close, wait for the Closed event, free; the freed handle is refused. */
    CHECK(outpost_client_close(a.client));
    CHECK(outpost_client_close(b.client));
    for (int i = 0; i < 1000 && !(a.closed && b.closed); i++) {
        frame(&a, 0);
        frame(&b, 0);
        sleep_ms(5);
    }
    if (!a.closed || !b.closed) fail("no Closed event");
    if (a.closed_ev.retry_after_ms != 0 || b.closed_ev.retry_after_ms != 0) fail("retry hint on a plain close");
    CHECK(outpost_client_free(a.client));
    CHECK(outpost_client_free(b.client));
    size_t n = 0;
    if (outpost_poll(a.client, NULL, 0, &n) != OUTPOST_STATUS_INVALID_HANDLE) fail("freed handle accepted");
    printf("C E2E OK\n");
    return 0;
}
