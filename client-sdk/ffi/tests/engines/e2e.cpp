// End-to-end example and test of the C++ wrapper (outpost.hpp) against a real
// gateway:  e2e_cpp <gateway host:port> <CA PEM file> <device prefix> <busy gateway> <its retry ms>
// Two players log in, save state, make a keyed grant, queue for a duel and
// both receive the match. On a second gateway that admits one session, a
// second login is refused with ServerBusy and its retry hint in
// Event::retry_after_ms, and in Status::retry_after_ms of a synchronous call
// on that client. Built and run by client-sdk/ffi/tests/engines.rs.
#include "outpost.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

namespace {

[[noreturn]] void fail(const std::string &what) {
    std::fprintf(stderr, "C++ E2E FAILED: %s\n", what.c_str());
    std::exit(1);
}

void check(const outpost::Status &s, const char *what) {
    if (!s) fail(std::string(what) + ": " + s.name() + ": " + s.message);
}

// A game-loop stand-in: polls every 5 ms and remembers what arrived.
struct Player {
    explicit Player(outpost::Client c) : client(std::move(c)) {}
    outpost::Client client;
    bool connected = false, closed = false, matched = false;
    std::string match_json;
    outpost::Event closed_event;

    // One frame; returns the Response to `want` if it arrived.
    bool frame(uint64_t want, outpost::Event *out) {
        auto events = client.poll();
        check(events.status, "poll");
        bool got = false;
        for (auto &e : events.value) {
            // Only a refusal with a retry hint (a Closed event here) carries one.
            if (e.kind != OUTPOST_EVENT_KIND_CLOSED && e.retry_after_ms != 0)
                fail("event kind " + std::to_string(e.kind) + " with retry_after_ms " + std::to_string(e.retry_after_ms));
            switch (e.kind) {
            case OUTPOST_EVENT_KIND_CONNECTED: connected = true; break;
            case OUTPOST_EVENT_KIND_CLOSED: closed = true; closed_event = e; break;
            case OUTPOST_EVENT_KIND_MATCH_FOUND: matched = true; match_json = e.data; break;
            case OUTPOST_EVENT_KIND_RESPONSE:
                if (out && e.request_id == want) { *out = e; got = true; }
                break;
            default: break;
            }
        }
        return got;
    }

    outpost::Event await(const outpost::Result<uint64_t> &req, const char *what) {
        check(req.status, what);
        outpost::Event e;
        for (int i = 0; i < 3000; i++) {
            if (frame(req.value, &e)) {
                if (e.status != OUTPOST_STATUS_OK) fail(std::string(what) + ": " + outpost_status_name(e.status) + ": " + e.text);
                return e;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        fail(std::string(what) + ": no response");
    }
};

outpost::Client connect(const std::string &addr, const std::string &pem, const std::string &device) {
    auto cfg = outpost::Config::create();
    check(cfg.status, "config");
    check(cfg.value.add_gateway(addr), "add_gateway");
    check(cfg.value.set_ca_pem(pem), "set_ca_pem");
    check(cfg.value.set_device(device, "cpp-e2e-secret-0123456789"), "set_device");
    check(cfg.value.set_reconnect(true, 50, 2000, 2.0, 0), "set_reconnect");
    auto client = outpost::Client::connect(cfg.value);
    check(client.status, "connect");
    return std::move(client.value);
}

template <class Pred>
void frames_until(Player &a, Player &b, Pred done, const char *what) {
    for (int i = 0; i < 3000 && !done(); i++) {
        a.frame(0, nullptr);
        b.frame(0, nullptr);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!done()) fail(what);
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 6) fail("usage: e2e_cpp <gateway> <ca.pem> <device prefix> <busy gateway> <its retry ms>");
    std::ifstream f(argv[2], std::ios::binary);
    std::stringstream pem;
    pem << f.rdbuf();
    std::string prefix = argv[3];

    // The busy gateway: `c` takes its only session, `d` is refused with
    // ServerBusy (code 300) and the wait it asks for.
    {
        Player c(connect(argv[4], pem.str(), prefix + "-c"));
        frames_until(c, c, [&] { return c.connected || c.closed; }, "login on the busy gateway");
        if (!c.connected) fail("login on the busy gateway failed: " + c.closed_event.text);
        Player d(connect(argv[4], pem.str(), prefix + "-d"));
        frames_until(d, d, [&] { return d.closed; }, "the login beyond the limit was not refused");
        const auto &r = d.closed_event;
        if (r.status != OUTPOST_STATUS_REJECTED || r.code != 300 || r.retry_after_ms != std::stoul(argv[5]))
            fail(std::string("refusal: ") + outpost_status_name(r.status) + ", code " + std::to_string(r.code) +
                 ", retry_after_ms " + std::to_string(r.retry_after_ms));
        std::printf("refused with retry_after_ms %u\n", r.retry_after_ms);
        // A synchronous call on the refused client returns REJECTED as well,
        // its hint in Status::retry_after_ms (NOT_READY until the connect task
        // records the refusal, just after the Closed event).
        auto refused = d.client.player_id();
        for (int i = 0; i < 400 && refused.status.code == OUTPOST_STATUS_NOT_READY; i++) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
            refused = d.client.player_id();
        }
        if (refused.status.code != OUTPOST_STATUS_REJECTED || refused.status.retry_after_ms != std::stoul(argv[5]) ||
            outpost::last_retry_after_ms() != refused.status.retry_after_ms)
            fail(std::string("player id after the refusal: ") + refused.status.name() + ", retry_after_ms " +
                 std::to_string(refused.status.retry_after_ms));
        auto closing = c.client.close();
        check(closing, "close c");
        if (closing.retry_after_ms != 0) fail("retry hint on a successful call");
        frames_until(c, c, [&] { return c.closed; }, "no Closed event for c");
        if (c.closed_event.retry_after_ms != 0) fail("retry hint on a plain close");
    }

    Player a(connect(argv[1], pem.str(), prefix + "-a"));
    Player b(connect(argv[1], pem.str(), prefix + "-b"));
    frames_until(a, b, [&] { return a.connected && b.connected; }, "login did not complete");
    auto id = a.client.player_id();
    check(id.status, "player_id");
    std::printf("logged in as %s\n", id.value.c_str());

    // State: create (expected version 0), then a stale write that conflicts.
    auto saved = a.await(a.client.state_set("profile", 0, "{\"level\":7}"), "state set");
    if (saved.num0 != 1) fail("state version " + std::to_string(saved.num0));
    auto stale = a.client.state_set("profile", 0, "{}");
    check(stale.status, "stale set");
    outpost::Event e;
    for (int i = 0; i < 3000 && !a.frame(stale.value, &e); i++) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (e.status != OUTPOST_STATUS_CONFLICT) fail("stale write did not conflict");

    // A keyed grant, repeated: applied once.
    std::vector<outpost::Asset> gems{{OUTPOST_ASSET_CURRENCY, "gems", 5}};
    auto first = a.await(a.client.grant(prefix + "-grant-1", "match_reward", gems), "grant");
    auto again = a.await(a.client.grant(prefix + "-grant-1", "match_reward", gems), "grant again");
    if (first.num0 != 0 || again.num0 != 1) fail("duplicate flags: " + again.data);
    auto bal = a.await(a.client.balances(), "balances");
    if (bal.data.find("\"amount\":5") == std::string::npos) fail("balances: " + bal.data);
    std::printf("balances %s\n", bal.data.c_str());

    // Matchmaking: both queue for a duel and both get the match.
    a.await(a.client.queue("duel"), "queue a");
    b.await(b.client.queue("duel"), "queue b");
    frames_until(a, b, [&] { return a.matched && b.matched; }, "no MatchFound push");
    std::printf("matched: %s\n", a.match_json.c_str());

    check(a.client.close(), "close a");
    check(b.client.close(), "close b");
    frames_until(a, b, [&] { return a.closed && b.closed; }, "no Closed event");
    std::printf("C++ E2E OK\n");
    return 0;  // the Clients free themselves
}
