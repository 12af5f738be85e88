// outpost.hpp: a header-only C++17 wrapper over outpost.h (the C ABI of the
// Outpost client SDK), for Unreal and other C++ engines. RAII, move-only
// handles; no exceptions (every call returns a Status or a Result); no
// callbacks: call Client::poll() once per frame and dispatch the events.
// Thread-safety as in outpost.h: any call from any thread; poll a client from
// one thread at a time. Events returned by poll() own copies of their text
// and data, so they stay valid as long as you keep them.
#ifndef OUTPOST_HPP
#define OUTPOST_HPP

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "outpost.h"

namespace outpost {

/// The calling thread's last error message (see outpost_last_error).
inline std::string last_error() {
    size_t len = 0;
    outpost_last_error(nullptr, 0, &len);
    std::string s(len, '\0');
    if (len > 0 && outpost_last_error(reinterpret_cast<uint8_t *>(&s[0]), s.size(), &len) != OUTPOST_STATUS_OK) {
        s.clear();
    }
    return s;
}

/// The retry hint of the calling thread's last error in ms, 0 for none (see
/// outpost_last_retry_after_ms).
inline uint32_t last_retry_after_ms() { return outpost_last_retry_after_ms(); }

/// A status code and, on failure, its message and retry hint.
struct Status {
    OutpostStatus code = OUTPOST_STATUS_OK;
    std::string message;
    /// On failure: the wait in ms the gateway asked for before trying again
    /// (e.g. OUTPOST_STATUS_REJECTED after a ServerBusy refusal), 0 if none.
    uint32_t retry_after_ms = 0;

    static Status from(OutpostStatus code) {
        return code == OUTPOST_STATUS_OK ? Status{} : Status{code, last_error(), last_retry_after_ms()};
    }
    bool ok() const { return code == OUTPOST_STATUS_OK; }
    explicit operator bool() const { return ok(); }
    const char *name() const { return outpost_status_name(code); }
};

/// A value or the Status that prevented it.
template <class T>
struct Result {
    Status status;
    T value{};
    bool ok() const { return status.ok(); }
    explicit operator bool() const { return ok(); }
};

inline const uint8_t *bytes(std::string_view s) { return reinterpret_cast<const uint8_t *>(s.data()); }

/// An event from Client::poll, with owned copies of text and data. The meaning
/// of each field per kind is documented on OutpostEventKind in outpost.h.
struct Event {
    OutpostEventKind kind = OUTPOST_EVENT_KIND_NONE;
    OutpostStatus status = OUTPOST_STATUS_OK;
    uint64_t request_id = 0;
    uint64_t num0 = 0;
    uint64_t num1 = 0;
    uint32_t code = 0;
    /// With an error status: the wait in ms asked for before trying again, 0 if none.
    uint32_t retry_after_ms = 0;
    std::string text;
    std::string data;
};

/// An amount of one item or currency for grants and consumes.
struct Asset {
    uint32_t kind = OUTPOST_ASSET_CURRENCY;
    std::string id;
    uint64_t amount = 0;
};

/// A connection configuration (see outpost_config_* in outpost.h).
class Config {
public:
    static Result<Config> create() {
        Result<Config> r;
        OutpostConfig h = 0;
        r.status = Status::from(outpost_config_new(&h));
        r.value.handle_ = h;
        return r;
    }
    Config() = default;
    Config(Config &&o) noexcept : handle_(std::exchange(o.handle_, 0)) {}
    Config &operator=(Config &&o) noexcept {
        if (this != &o) {
            outpost_config_free(handle_);
            handle_ = std::exchange(o.handle_, 0);
        }
        return *this;
    }
    Config(const Config &) = delete;
    Config &operator=(const Config &) = delete;
    ~Config() { outpost_config_free(handle_); }

    Status add_gateway(std::string_view addr) {
        return Status::from(outpost_config_add_gateway(handle_, bytes(addr), addr.size()));
    }
    Status set_ca_pem(std::string_view pem) {
        return Status::from(outpost_config_set_ca_pem(handle_, bytes(pem), pem.size()));
    }
    Status set_device(std::string_view device_id, std::string_view secret) {
        return Status::from(
            outpost_config_set_device(handle_, bytes(device_id), device_id.size(), bytes(secret), secret.size()));
    }
    Status set_token(std::string_view token) {
        return Status::from(outpost_config_set_token(handle_, bytes(token), token.size()));
    }
    Status set_server_name(std::string_view name) {
        return Status::from(outpost_config_set_server_name(handle_, bytes(name), name.size()));
    }
    Status set_client_version(std::string_view v) {
        return Status::from(outpost_config_set_client_version(handle_, bytes(v), v.size()));
    }
    Status set_request_timeout_ms(uint32_t ms) { return Status::from(outpost_config_set_request_timeout_ms(handle_, ms)); }
    Status set_reconnect(bool automatic, uint32_t initial_ms, uint32_t max_ms, double multiplier, uint32_t max_attempts) {
        return Status::from(
            outpost_config_set_reconnect(handle_, automatic ? 1 : 0, initial_ms, max_ms, multiplier, max_attempts));
    }
    Status set_telemetry(bool enabled) { return Status::from(outpost_config_set_telemetry(handle_, enabled ? 1 : 0)); }
    /// The login queue: on (default) with at most `max_wait_secs` of waiting, or off.
    Status set_queue(bool enabled, uint32_t max_wait_secs) {
        return Status::from(outpost_config_set_queue(handle_, enabled ? 1 : 0, max_wait_secs));
    }
    OutpostConfig handle() const { return handle_; }

private:
    OutpostConfig handle_ = 0;
};

/// One player's session. Move-only; the destructor frees it (logging out if
/// still connected, which blocks up to ~2 s: call close() and wait for the
/// Closed event first to avoid that).
class Client {
public:
    /// Starts connecting; the login's outcome arrives as a Connected or Closed event.
    static Result<Client> connect(const Config &config) {
        Result<Client> r;
        OutpostClient h = 0;
        r.status = Status::from(outpost_client_connect(config.handle(), &h));
        r.value.handle_ = h;
        return r;
    }
    Client() = default;
    Client(Client &&o) noexcept : handle_(std::exchange(o.handle_, 0)) {}
    Client &operator=(Client &&o) noexcept {
        if (this != &o) {
            outpost_client_free(handle_);
            handle_ = std::exchange(o.handle_, 0);
        }
        return *this;
    }
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;
    ~Client() { outpost_client_free(handle_); }

    /// The events queued since the last poll (at most max), without waiting.
    Result<std::vector<Event>> poll(size_t max = 64) {
        Result<std::vector<Event>> r;
        std::vector<OutpostEvent> raw(max);
        size_t n = 0;
        r.status = Status::from(outpost_poll(handle_, raw.data(), raw.size(), &n));
        if (!r.ok()) return r;
        r.value.reserve(n);
        for (size_t i = 0; i < n; i++) {
            const OutpostEvent &e = raw[i];
            Event ev;
            ev.kind = static_cast<OutpostEventKind>(e.kind);
            ev.status = static_cast<OutpostStatus>(e.status);
            ev.request_id = e.request_id;
            ev.num0 = e.num0;
            ev.num1 = e.num1;
            ev.code = e.code;
            ev.retry_after_ms = e.retry_after_ms;
            if (e.text_len) ev.text.assign(reinterpret_cast<const char *>(e.text), e.text_len);
            if (e.data_len) ev.data.assign(reinterpret_cast<const char *>(e.data), e.data_len);
            r.value.push_back(std::move(ev));
        }
        return r;
    }

    Status close() { return Status::from(outpost_client_close(handle_)); }

    Result<std::string> player_id() const {
        Result<std::string> r;
        size_t len = 0;
        OutpostStatus s = outpost_client_player_id(handle_, nullptr, 0, &len);
        if (s == OUTPOST_STATUS_BUFFER_TOO_SMALL) {
            r.value.resize(len);
            s = outpost_client_player_id(handle_, reinterpret_cast<uint8_t *>(&r.value[0]), len, &len);
        }
        r.status = Status::from(s);
        return r;
    }

    // Asynchronous calls: each returns the request id; the answer is a
    // Response event with that id (payload as documented in outpost.h).
    Result<uint64_t> ping() { return request([&](uint64_t *id) { return outpost_ping(handle_, id); }); }
    Result<uint64_t> state_get(std::string_view name) {
        return request([&](uint64_t *id) { return outpost_state_get(handle_, bytes(name), name.size(), id); });
    }
    Result<uint64_t> state_set(std::string_view name, uint64_t expected_version, std::string_view value) {
        return request([&](uint64_t *id) {
            return outpost_state_set(handle_, bytes(name), name.size(), expected_version, bytes(value), value.size(), id);
        });
    }
    Result<uint64_t> balances() {
        return request([&](uint64_t *id) { return outpost_inventory_balances(handle_, id); });
    }
    Result<uint64_t> history(std::string_view after, uint16_t limit, bool reverse) {
        return request([&](uint64_t *id) {
            return outpost_inventory_history(handle_, bytes(after), after.size(), limit, reverse ? 1 : 0, id);
        });
    }
    /// An empty key lets the SDK make one (returned in the Response's text).
    Result<uint64_t> grant(std::string_view key, std::string_view source, const std::vector<Asset> &items) {
        auto raw = assets(items);
        return request([&](uint64_t *id) {
            return outpost_inventory_grant(handle_, bytes(key), key.size(), bytes(source), source.size(), raw.data(),
                                           raw.size(), id);
        });
    }
    Result<uint64_t> consume(std::string_view key, std::string_view source, const std::vector<Asset> &items) {
        auto raw = assets(items);
        return request([&](uint64_t *id) {
            return outpost_inventory_consume(handle_, bytes(key), key.size(), bytes(source), source.size(), raw.data(),
                                             raw.size(), id);
        });
    }
    Result<uint64_t> purchase(std::string_view key, std::string_view offer) {
        return request([&](uint64_t *id) {
            return outpost_inventory_purchase(handle_, bytes(key), key.size(), bytes(offer), offer.size(), id);
        });
    }
    /// Queues with the SDK's own measurement of the current region.
    Result<uint64_t> queue(std::string_view queue_name) {
        return request([&](uint64_t *id) {
            return outpost_matchmaking_queue(handle_, bytes(queue_name), queue_name.size(), nullptr, nullptr, nullptr, 0,
                                             0, id);
        });
    }
    Result<uint64_t> cancel_queue() {
        return request([&](uint64_t *id) { return outpost_matchmaking_cancel(handle_, id); });
    }
    Result<uint64_t> live_start() { return request([&](uint64_t *id) { return outpost_live_start(handle_, id); }); }
    Result<uint64_t> flush_telemetry() {
        return request([&](uint64_t *id) { return outpost_telemetry_flush(handle_, id); });
    }

    // Synchronous reads of the live cache (after live_start's Response).
    Result<bool> flag_bool(std::string_view key, bool fallback) const {
        Result<bool> r;
        uint8_t v = 0;
        r.status = Status::from(outpost_flag_bool(handle_, bytes(key), key.size(), fallback ? 1 : 0, &v));
        r.value = v != 0;
        return r;
    }
    Result<double> flag_number(std::string_view key, double fallback) const {
        Result<double> r;
        r.status = Status::from(outpost_flag_number(handle_, bytes(key), key.size(), fallback, &r.value));
        return r;
    }

    Status report_error(std::string_view code, std::string_view context) {
        return Status::from(
            outpost_telemetry_report_error(handle_, bytes(code), code.size(), bytes(context), context.size()));
    }
    Status report_latency_us(uint64_t us) { return Status::from(outpost_telemetry_report_latency_us(handle_, us)); }

    OutpostClient handle() const { return handle_; }

private:
    template <class F>
    Result<uint64_t> request(F &&call) {
        Result<uint64_t> r;
        r.status = Status::from(call(&r.value));
        return r;
    }
    static std::vector<OutpostAsset> assets(const std::vector<Asset> &items) {
        std::vector<OutpostAsset> raw;
        raw.reserve(items.size());
        for (const Asset &a : items) raw.push_back(OutpostAsset{a.kind, 0, bytes(a.id), a.id.size(), a.amount});
        return raw;
    }

    OutpostClient handle_ = 0;
};

}  // namespace outpost

#endif  // OUTPOST_HPP
