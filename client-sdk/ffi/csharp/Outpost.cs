// Outpost.cs: C# bindings (P/Invoke) for the Outpost client SDK's C ABI
// (liboutpost_client_ffi), using only .NET Standard 2.1 APIs so that Unity
// (Mono or IL2CPP) can use it; see README.md. No callbacks: call
// Client.Poll() once per frame (e.g. from a MonoBehaviour's Update) and
// dispatch the events on the main thread. No unsafe code.
//
// Handles are numbers in the native library's tables, wrapped in SafeHandles
// so the garbage collector frees them if Dispose was forgotten; a handle used
// after it was freed is an InvalidHandle status, never a crash.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace Outpost
{
    /// <summary>outpost.h's OutpostStatus.</summary>
    public enum Status : int
    {
        Ok = 0, NullPointer = 1, InvalidUtf8 = 2, InvalidArgument = 3, InvalidHandle = 4,
        BufferTooSmall = 5, NotReady = 6, TooManyRequests = 7,
        Config = 100, Connect = 101, Rejected = 102, Kicked = 103, Server = 104, Conflict = 105,
        ChannelClosed = 106, Timeout = 107, ConnectionLost = 108, Closed = 109, Protocol = 110,
        RequestTooLarge = 111, Internal = 199,
    }

    /// <summary>outpost.h's OutpostEventKind; field meanings per kind are documented there.</summary>
    public enum EventKind : uint
    {
        None = 0, Connected = 1, Disconnected = 2, Reconnecting = 3, GoAway = 4, Kicked = 5,
        Closed = 6, Lagged = 7, Response = 8, StateChanged = 9, InventoryChanged = 10,
        MatchFound = 11, FlagsChanged = 12, ContentPublished = 13, ClientTooOld = 14,
        EchoPush = 15, QueuePosition = 16, QueueAdmitted = 17, MatchNotFound = 18,
    }

    public enum AssetKind : uint { Item = 0, Currency = 1 }

    /// <summary>An event with owned copies of its text and data.</summary>
    public sealed class Event
    {
        public EventKind Kind;
        public Status Status;
        public ulong RequestId;
        public ulong Num0;
        public ulong Num1;
        public uint Code;
        /// <summary>With an error Status (Response, Disconnected, Closed): the wait in ms asked for
        /// before trying again (e.g. Rejected with ServerBusy, Server with RateLimited); 0 if none.</summary>
        public uint RetryAfterMs;
        public string Text = "";
        public byte[] Data = new byte[0];
        public string DataText { get { return Encoding.UTF8.GetString(Data); } }
        public override string ToString() { return Kind + " " + Status + " #" + RequestId + " " + Text; }
    }

    public struct Asset
    {
        public AssetKind Kind;
        public string Id;
        public ulong Amount;
        public Asset(AssetKind kind, string id, ulong amount) { Kind = kind; Id = id; Amount = amount; }
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct RawEvent
    {
        public uint kind; public int status; public ulong request_id; public ulong num0; public ulong num1;
        public uint code; public uint retry_after_ms; public IntPtr text; public UIntPtr text_len; public IntPtr data; public UIntPtr data_len;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct RawAsset
    {
        public uint kind; public uint reserved; public IntPtr id; public UIntPtr id_len; public ulong amount;
    }

    internal static class Native
    {
        // Unity: liboutpost_client_ffi.so / outpost_client_ffi.dll / .dylib under Assets/Plugins.
        const string Lib = "outpost_client_ffi";
        [DllImport(Lib)] internal static extern Status outpost_last_error(byte[] buf, UIntPtr cap, out UIntPtr len);
        [DllImport(Lib)] internal static extern uint outpost_last_retry_after_ms();
        [DllImport(Lib)] internal static extern IntPtr outpost_status_name(int status);
        [DllImport(Lib)] internal static extern Status outpost_config_new(out ulong cfg);
        [DllImport(Lib)] internal static extern Status outpost_config_free(ulong cfg);
        [DllImport(Lib)] internal static extern Status outpost_config_add_gateway(ulong cfg, byte[] s, UIntPtr len);
        [DllImport(Lib)] internal static extern Status outpost_config_set_ca_pem(ulong cfg, byte[] s, UIntPtr len);
        [DllImport(Lib)] internal static extern Status outpost_config_set_device(ulong cfg, byte[] id, UIntPtr id_len, byte[] secret, UIntPtr secret_len);
        [DllImport(Lib)] internal static extern Status outpost_config_set_token(ulong cfg, byte[] s, UIntPtr len);
        [DllImport(Lib)] internal static extern Status outpost_config_set_client_version(ulong cfg, byte[] s, UIntPtr len);
        [DllImport(Lib)] internal static extern Status outpost_config_set_reconnect(ulong cfg, byte auto, uint initial_ms, uint max_ms, double multiplier, uint max_attempts);
        [DllImport(Lib)] internal static extern Status outpost_config_set_queue(ulong cfg, byte enabled, uint max_wait_secs);
        [DllImport(Lib)] internal static extern Status outpost_client_connect(ulong cfg, out ulong client);
        [DllImport(Lib)] internal static extern Status outpost_client_close(ulong client);
        [DllImport(Lib)] internal static extern Status outpost_client_free(ulong client);
        [DllImport(Lib)] internal static extern Status outpost_client_player_id(ulong client, byte[] buf, UIntPtr cap, out UIntPtr len);
        [DllImport(Lib)] internal static extern Status outpost_poll(ulong client, [Out] RawEvent[] events, UIntPtr cap, out UIntPtr count);
        [DllImport(Lib)] internal static extern Status outpost_state_get(ulong client, byte[] name, UIntPtr name_len, out ulong req);
        [DllImport(Lib)] internal static extern Status outpost_state_set(ulong client, byte[] name, UIntPtr name_len, ulong expected, byte[] value, UIntPtr value_len, out ulong req);
        [DllImport(Lib)] internal static extern Status outpost_inventory_balances(ulong client, out ulong req);
        [DllImport(Lib)] internal static extern Status outpost_inventory_grant(ulong client, byte[] key, UIntPtr key_len, byte[] source, UIntPtr source_len, RawAsset[] items, UIntPtr count, out ulong req);
        [DllImport(Lib)] internal static extern Status outpost_inventory_consume(ulong client, byte[] key, UIntPtr key_len, byte[] source, UIntPtr source_len, RawAsset[] items, UIntPtr count, out ulong req);
        [DllImport(Lib)] internal static extern Status outpost_inventory_purchase(ulong client, byte[] key, UIntPtr key_len, byte[] offer, UIntPtr offer_len, out ulong req);
        [DllImport(Lib)] internal static extern Status outpost_matchmaking_queue(ulong client, byte[] queue, UIntPtr queue_len, IntPtr regions, IntPtr region_lens, IntPtr rtts, UIntPtr count, uint max_latency_ms, out ulong req);
        [DllImport(Lib)] internal static extern Status outpost_matchmaking_cancel(ulong client, out ulong req);
        [DllImport(Lib)] internal static extern Status outpost_live_start(ulong client, out ulong req);
        [DllImport(Lib)] internal static extern Status outpost_flag_bool(ulong client, byte[] key, UIntPtr key_len, byte fallback, out byte value);
        [DllImport(Lib)] internal static extern Status outpost_telemetry_report_error(ulong client, byte[] code, UIntPtr code_len, byte[] context, UIntPtr context_len);
        [DllImport(Lib)] internal static extern Status outpost_telemetry_flush(ulong client, out ulong req);
    }

    internal static class Utf8
    {
        internal static byte[] Bytes(string s) { return Encoding.UTF8.GetBytes(s ?? ""); }
        internal static UIntPtr Len(byte[] b) { return (UIntPtr)b.Length; }
        internal static byte[] Copy(IntPtr p, UIntPtr len)
        {
            var n = (int)len.ToUInt64();
            var b = new byte[n];
            if (n > 0) Marshal.Copy(p, b, 0, n);
            return b;
        }
    }

    /// <summary>Static helpers: the thread's last error and its retry hint, status names.</summary>
    public static class Sdk
    {
        /// <summary>The calling thread's last error message (outpost_last_error).</summary>
        public static string LastError()
        {
            UIntPtr len;
            Native.outpost_last_error(null, UIntPtr.Zero, out len);
            var buf = new byte[(int)len.ToUInt64()];
            if (Native.outpost_last_error(buf, (UIntPtr)buf.Length, out len) != Status.Ok) return "";
            return Encoding.UTF8.GetString(buf);
        }

        /// <summary>The retry hint of the calling thread's last error (outpost_last_retry_after_ms): the wait
        /// in ms the gateway asked for before trying again (e.g. a call that returned Rejected after a
        /// ServerBusy refusal), 0 if none. Replaced by the next failed call; successful calls keep it.</summary>
        public static uint LastRetryAfterMs() { return Native.outpost_last_retry_after_ms(); }

        public static string StatusName(Status s) { return Marshal.PtrToStringAnsi(Native.outpost_status_name((int)s)); }
    }

    /// <summary>Thrown only by constructors (Config, Client.Connect) that cannot return a status.</summary>
    public sealed class OutpostException : Exception
    {
        public readonly Status Status;
        public OutpostException(Status status, string message) : base(Sdk.StatusName(status) + ": " + message) { Status = status; }
        internal static void Check(Status s) { if (s != Status.Ok) throw new OutpostException(s, Sdk.LastError()); }
    }

    internal sealed class ConfigHandle : SafeHandle
    {
        public ConfigHandle() : base(IntPtr.Zero, true) { }
        internal ulong Id;
        public override bool IsInvalid { get { return Id == 0; } }
        protected override bool ReleaseHandle() { Native.outpost_config_free(Id); Id = 0; return true; }
    }

    internal sealed class ClientHandle : SafeHandle
    {
        public ClientHandle() : base(IntPtr.Zero, true) { }
        internal ulong Id;
        public override bool IsInvalid { get { return Id == 0; } }
        protected override bool ReleaseHandle() { Native.outpost_client_free(Id); Id = 0; return true; }
    }

    /// <summary>A connection configuration (outpost_config_*).</summary>
    public sealed class Config : IDisposable
    {
        internal readonly ConfigHandle Handle = new ConfigHandle();
        public Config() { OutpostException.Check(Native.outpost_config_new(out Handle.Id)); }
        public Status AddGateway(string hostPort) { var b = Utf8.Bytes(hostPort); return Native.outpost_config_add_gateway(Handle.Id, b, Utf8.Len(b)); }
        public Status SetCaPem(string pem) { var b = Utf8.Bytes(pem); return Native.outpost_config_set_ca_pem(Handle.Id, b, Utf8.Len(b)); }
        public Status SetDevice(string deviceId, string secret)
        {
            byte[] d = Utf8.Bytes(deviceId), s = Utf8.Bytes(secret);
            return Native.outpost_config_set_device(Handle.Id, d, Utf8.Len(d), s, Utf8.Len(s));
        }
        public Status SetToken(string token) { var b = Utf8.Bytes(token); return Native.outpost_config_set_token(Handle.Id, b, Utf8.Len(b)); }
        public Status SetClientVersion(string v) { var b = Utf8.Bytes(v); return Native.outpost_config_set_client_version(Handle.Id, b, Utf8.Len(b)); }
        public Status SetReconnect(bool automatic, uint initialMs, uint maxMs, double multiplier, uint maxAttempts)
        {
            return Native.outpost_config_set_reconnect(Handle.Id, (byte)(automatic ? 1 : 0), initialMs, maxMs, multiplier, maxAttempts);
        }
        /// <summary>The login queue: on (default) with at most maxWaitSecs of waiting (QueuePosition events meanwhile), or off.</summary>
        public Status SetQueue(bool enabled, uint maxWaitSecs) { return Native.outpost_config_set_queue(Handle.Id, (byte)(enabled ? 1 : 0), maxWaitSecs); }
        public void Dispose() { Handle.Dispose(); }
    }

    /// <summary>One player's session. Dispose() frees it (logging out if still
    /// connected, blocking up to ~2 s; Close() and wait for the Closed event first to avoid that).</summary>
    public sealed class Client : IDisposable
    {
        readonly ClientHandle handle = new ClientHandle();
        readonly RawEvent[] raw;

        Client(int pollCapacity) { raw = new RawEvent[pollCapacity]; }

        /// <summary>Starts connecting; the login's outcome arrives as a Connected or Closed event.</summary>
        public static Client Connect(Config config, int pollCapacity = 64)
        {
            var c = new Client(pollCapacity);
            OutpostException.Check(Native.outpost_client_connect(config.Handle.Id, out c.handle.Id));
            return c;
        }

        ulong Id { get { return handle.Id; } }

        /// <summary>Appends the queued events to `into`, without waiting. Call once per frame.</summary>
        public Status Poll(List<Event> into)
        {
            UIntPtr n;
            var s = Native.outpost_poll(Id, raw, (UIntPtr)raw.Length, out n);
            if (s != Status.Ok) return s;
            for (int i = 0; i < (int)n.ToUInt64(); i++)
            {
                var e = raw[i];
                into.Add(new Event
                {
                    Kind = (EventKind)e.kind, Status = (Status)e.status, RequestId = e.request_id,
                    Num0 = e.num0, Num1 = e.num1, Code = e.code, RetryAfterMs = e.retry_after_ms,
                    Text = Encoding.UTF8.GetString(Utf8.Copy(e.text, e.text_len)),
                    Data = Utf8.Copy(e.data, e.data_len),
                });
            }
            return Status.Ok;
        }

        public Status Close() { return Native.outpost_client_close(Id); }

        public Status PlayerId(out string playerId)
        {
            playerId = "";
            UIntPtr len;
            var s = Native.outpost_client_player_id(Id, null, UIntPtr.Zero, out len);
            if (s != Status.BufferTooSmall) return s;
            var buf = new byte[(int)len.ToUInt64()];
            s = Native.outpost_client_player_id(Id, buf, (UIntPtr)buf.Length, out len);
            if (s == Status.Ok) playerId = Encoding.UTF8.GetString(buf);
            return s;
        }

        // Asynchronous calls: the answer is a Response event with the request id.
        public Status StateGet(string name, out ulong requestId)
        {
            var n = Utf8.Bytes(name);
            return Native.outpost_state_get(Id, n, Utf8.Len(n), out requestId);
        }

        public Status StateSet(string name, ulong expectedVersion, byte[] value, out ulong requestId)
        {
            var n = Utf8.Bytes(name);
            value = value ?? new byte[0];
            return Native.outpost_state_set(Id, n, Utf8.Len(n), expectedVersion, value, (UIntPtr)value.Length, out requestId);
        }

        public Status Balances(out ulong requestId) { return Native.outpost_inventory_balances(Id, out requestId); }

        /// <summary>An empty key lets the SDK make one (returned in the Response's Text).</summary>
        public Status Grant(string idempotencyKey, string source, Asset[] items, out ulong requestId)
        {
            return Write(true, idempotencyKey, source, items, out requestId);
        }

        public Status Consume(string idempotencyKey, string source, Asset[] items, out ulong requestId)
        {
            return Write(false, idempotencyKey, source, items, out requestId);
        }

        Status Write(bool grant, string key, string source, Asset[] items, out ulong requestId)
        {
            byte[] k = Utf8.Bytes(key), s = Utf8.Bytes(source);
            var pins = new List<GCHandle>();
            try
            {
                var rawItems = new RawAsset[items.Length];
                for (int i = 0; i < items.Length; i++)
                {
                    var id = Utf8.Bytes(items[i].Id);
                    var pin = GCHandle.Alloc(id, GCHandleType.Pinned);
                    pins.Add(pin);
                    rawItems[i] = new RawAsset { kind = (uint)items[i].Kind, id = pin.AddrOfPinnedObject(), id_len = (UIntPtr)id.Length, amount = items[i].Amount };
                }
                return grant
                    ? Native.outpost_inventory_grant(Id, k, Utf8.Len(k), s, Utf8.Len(s), rawItems, (UIntPtr)rawItems.Length, out requestId)
                    : Native.outpost_inventory_consume(Id, k, Utf8.Len(k), s, Utf8.Len(s), rawItems, (UIntPtr)rawItems.Length, out requestId);
            }
            finally
            {
                foreach (var p in pins) p.Free();
            }
        }

        public Status Purchase(string idempotencyKey, string offer, out ulong requestId)
        {
            byte[] k = Utf8.Bytes(idempotencyKey), o = Utf8.Bytes(offer);
            return Native.outpost_inventory_purchase(Id, k, Utf8.Len(k), o, Utf8.Len(o), out requestId);
        }

        /// <summary>Queues with the SDK's own measurement of the current region; the match arrives as MatchFound.</summary>
        public Status Queue(string queue, out ulong requestId)
        {
            var q = Utf8.Bytes(queue);
            return Native.outpost_matchmaking_queue(Id, q, Utf8.Len(q), IntPtr.Zero, IntPtr.Zero, IntPtr.Zero, UIntPtr.Zero, 0, out requestId);
        }

        public Status CancelQueue(out ulong requestId) { return Native.outpost_matchmaking_cancel(Id, out requestId); }
        public Status LiveStart(out ulong requestId) { return Native.outpost_live_start(Id, out requestId); }

        /// <summary>A cached flag (after LiveStart's Response); never blocks.</summary>
        public Status FlagBool(string key, bool fallback, out bool value)
        {
            var k = Utf8.Bytes(key);
            byte v;
            var s = Native.outpost_flag_bool(Id, k, Utf8.Len(k), (byte)(fallback ? 1 : 0), out v);
            value = v != 0;
            return s;
        }

        public Status ReportError(string code, string context)
        {
            byte[] c = Utf8.Bytes(code), x = Utf8.Bytes(context);
            return Native.outpost_telemetry_report_error(Id, c, Utf8.Len(c), x, Utf8.Len(x));
        }

        public Status FlushTelemetry(out ulong requestId) { return Native.outpost_telemetry_flush(Id, out requestId); }

        public void Dispose() { handle.Dispose(); }
    }
}
