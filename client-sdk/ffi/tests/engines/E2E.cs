// End-to-end example and test of the C# wrapper (csharp/Outpost.cs) against a
// real gateway, run with Mono:
//   mono e2e.exe <gateway host:port> <CA PEM file> <device prefix> <busy gateway> <its retry ms>
// Two players log in, save state, make a keyed grant, queue for a duel and
// both receive the match. On a second gateway that admits one session, a
// second login is refused with ServerBusy and its retry hint in
// Event.RetryAfterMs, and in Sdk.LastRetryAfterMs() after a synchronous call
// on that client. Built and run by client-sdk/ffi/tests/engines.rs.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using System.Threading;
using Outpost;

static class E2E
{
    static void Fail(string what) { Console.Error.WriteLine("C# E2E FAILED: " + what); Environment.Exit(1); }
    static void Check(Status s, string what) { if (s != Status.Ok) Fail(what + ": " + Sdk.StatusName(s) + ": " + Sdk.LastError()); }

    // A game-loop stand-in: polls every 5 ms and remembers what arrived.
    sealed class Player
    {
        public Client Client;
        public bool Connected, Closed, Matched;
        public string MatchJson = "";
        public Event ClosedEvent;
        readonly List<Event> events = new List<Event>();

        public Event Frame(ulong want)
        {
            events.Clear();
            Check(Client.Poll(events), "poll");
            Event answer = null;
            foreach (var e in events)
            {
                // Only a refusal with a retry hint (a Closed event here) carries one.
                if (e.Kind != EventKind.Closed && e.RetryAfterMs != 0) Fail(e.Kind + " with RetryAfterMs " + e.RetryAfterMs);
                if (e.Kind == EventKind.Connected) Connected = true;
                if (e.Kind == EventKind.Closed) { Closed = true; ClosedEvent = e; }
                if (e.Kind == EventKind.MatchFound) { Matched = true; MatchJson = e.DataText; }
                if (e.Kind == EventKind.Response && e.RequestId == want) answer = e;
            }
            return answer;
        }

        public Event Await(Status started, ulong id, string what, Status want = Status.Ok)
        {
            Check(started, what);
            for (int i = 0; i < 3000; i++)
            {
                var e = Frame(id);
                if (e != null)
                {
                    if (e.Status != want) Fail(what + ": " + e.Status + ": " + e.Text);
                    return e;
                }
                Thread.Sleep(5);
            }
            Fail(what + ": no response");
            return null;
        }
    }

    static Player Connect(string addr, string pem, string device)
    {
        using (var cfg = new Config())
        {
            Check(cfg.AddGateway(addr), "AddGateway");
            Check(cfg.SetCaPem(pem), "SetCaPem");
            Check(cfg.SetDevice(device, "cs-e2e-secret-0123456789"), "SetDevice");
            Check(cfg.SetReconnect(true, 50, 2000, 2.0, 0), "SetReconnect");
            return new Player { Client = Client.Connect(cfg) };
        }
    }

    static void Until(Player a, Player b, Func<bool> done, string what)
    {
        for (int i = 0; i < 3000 && !done(); i++) { a.Frame(0); b.Frame(0); Thread.Sleep(5); }
        if (!done()) Fail(what);
    }

    static int Main(string[] args)
    {
        if (args.Length != 5) Fail("usage: e2e.exe <gateway> <ca.pem> <device prefix> <busy gateway> <its retry ms>");
        var pem = File.ReadAllText(args[1]);

        // The busy gateway: c takes its only session, d is refused with
        // ServerBusy (code 300) and the wait it asks for.
        var c = Connect(args[3], pem, args[2] + "-c");
        Until(c, c, () => c.Connected || c.Closed, "login on the busy gateway");
        if (!c.Connected) Fail("login on the busy gateway failed: " + c.ClosedEvent);
        var d = Connect(args[3], pem, args[2] + "-d");
        Until(d, d, () => d.Closed, "the login beyond the limit was not refused");
        var r = d.ClosedEvent;
        if (r.Status != Status.Rejected || r.Code != 300 || r.RetryAfterMs != uint.Parse(args[4]))
            Fail("refusal: " + r.Status + ", code " + r.Code + ", RetryAfterMs " + r.RetryAfterMs);
        Console.WriteLine("refused with RetryAfterMs " + r.RetryAfterMs);
        // A synchronous call on the refused client returns Rejected as well,
        // its hint in Sdk.LastRetryAfterMs() (NotReady until the connect task
        // records the refusal, just after the Closed event).
        string noPlayer;
        var refused = d.Client.PlayerId(out noPlayer);
        for (int i = 0; i < 400 && refused == Status.NotReady; i++) { Thread.Sleep(5); refused = d.Client.PlayerId(out noPlayer); }
        if (refused != Status.Rejected || Sdk.LastRetryAfterMs() != uint.Parse(args[4]))
            Fail("PlayerId after the refusal: " + refused + ", LastRetryAfterMs " + Sdk.LastRetryAfterMs());
        Check(c.Client.Close(), "close c");
        Until(c, c, () => c.Closed, "no Closed event for c");
        if (c.ClosedEvent.RetryAfterMs != 0) Fail("retry hint on a plain close");
        c.Client.Dispose();
        d.Client.Dispose();
        var a = Connect(args[0], pem, args[2] + "-a");
        var b = Connect(args[0], pem, args[2] + "-b");
        Until(a, b, () => a.Connected && b.Connected, "login did not complete");
        string player;
        Check(a.Client.PlayerId(out player), "PlayerId");
        Console.WriteLine("logged in as " + player);

        ulong req;
        var saved = a.Await(a.Client.StateSet("profile", 0, Encoding.UTF8.GetBytes("{\"level\":9}"), out req), req, "state set");
        if (saved.Num0 != 1) Fail("state version " + saved.Num0);
        a.Await(a.Client.StateSet("profile", 0, new byte[0], out req), req, "stale set", Status.Conflict);
        var doc = a.Await(a.Client.StateGet("profile", out req), req, "state get");
        if (doc.DataText != "{\"level\":9}") Fail("state get: " + doc.DataText);

        var gold = new[] { new Asset(AssetKind.Currency, "gold", 42) };
        var first = a.Await(a.Client.Grant(args[2] + "-grant-1", "match_reward", gold, out req), req, "grant");
        var again = a.Await(a.Client.Grant(args[2] + "-grant-1", "match_reward", gold, out req), req, "grant again");
        if (first.Num0 != 0 || again.Num0 != 1) Fail("duplicate flags: " + again.DataText);
        var bal = a.Await(a.Client.Balances(out req), req, "balances");
        if (!bal.DataText.Contains("\"amount\":42")) Fail("balances: " + bal.DataText);
        Console.WriteLine("balances " + bal.DataText);

        a.Await(a.Client.Queue("duel", out req), req, "queue a");
        b.Await(b.Client.Queue("duel", out req), req, "queue b");
        Until(a, b, () => a.Matched && b.Matched, "no MatchFound push");
        Console.WriteLine("matched: " + a.MatchJson);

        Check(a.Client.Close(), "close a");
        Check(b.Client.Close(), "close b");
        Until(a, b, () => a.Closed && b.Closed, "no Closed event");
        a.Client.Dispose();
        b.Client.Dispose();
        var after = new List<Event>();
        if (a.Client.Poll(after) != Status.InvalidHandle) Fail("disposed client still usable");
        Console.WriteLine("C# E2E OK");
        return 0;
    }
}
