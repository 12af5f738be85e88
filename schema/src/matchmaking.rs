//! Matchmaking-channel values as owned Rust types, and their FlatBuffers codec
//! (used by `channel.rs`).

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};

use crate::gen::outpost::wire as fb;
pub use crate::gen::outpost::wire::{NoMatchReason, TicketStatus};

/// A measured round-trip time to a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionRtt {
    pub region: String,
    pub rtt_ms: u32,
}

/// A formed match as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MatchInfo {
    pub match_id: String,
    pub queue: String,
    pub region: String,
    pub server: String,
    /// Index of the player's own team in `teams`.
    pub team: u32,
    pub teams: Vec<Vec<String>>,
    pub cross_region: bool,
}

fn s(v: Option<&str>) -> String {
    v.unwrap_or_default().to_owned()
}

pub(crate) fn write_rtts<'a>(
    b: &mut FlatBufferBuilder<'a>,
    v: &[RegionRtt],
) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::RegionRtt<'a>>>> {
    let offs: Vec<_> = v
        .iter()
        .map(|r| {
            let region = Some(b.create_string(&r.region));
            fb::RegionRtt::create(
                b,
                &fb::RegionRttArgs {
                    region,
                    rtt_ms: r.rtt_ms,
                },
            )
        })
        .collect();
    b.create_vector(&offs)
}

pub(crate) fn read_rtts(v: Option<Vector<'_, ForwardsUOffset<fb::RegionRtt<'_>>>>) -> Vec<RegionRtt> {
    v.map(|v| {
        v.iter()
            .map(|r| RegionRtt {
                region: s(r.region()),
                rtt_ms: r.rtt_ms(),
            })
            .collect()
    })
    .unwrap_or_default()
}

pub(crate) fn write_match<'a>(b: &mut FlatBufferBuilder<'a>, m: &MatchInfo) -> WIPOffset<fb::MatchInfo<'a>> {
    let teams: Vec<_> = m
        .teams
        .iter()
        .map(|t| {
            let names: Vec<_> = t.iter().map(|p| b.create_string(p)).collect();
            let players = Some(b.create_vector(&names));
            fb::MatchTeam::create(b, &fb::MatchTeamArgs { players })
        })
        .collect();
    let args = fb::MatchInfoArgs {
        match_id: Some(b.create_string(&m.match_id)),
        queue: Some(b.create_string(&m.queue)),
        region: Some(b.create_string(&m.region)),
        server: Some(b.create_string(&m.server)),
        team: m.team,
        teams: Some(b.create_vector(&teams)),
        cross_region: m.cross_region,
    };
    fb::MatchInfo::create(b, &args)
}

pub(crate) fn read_match(m: fb::MatchInfo<'_>) -> MatchInfo {
    MatchInfo {
        match_id: s(m.match_id()),
        queue: s(m.queue()),
        region: s(m.region()),
        server: s(m.server()),
        team: m.team(),
        teams: m
            .teams()
            .map(|ts| {
                ts.iter()
                    .map(|t| {
                        t.players()
                            .map(|p| p.iter().map(str::to_owned).collect())
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default(),
        cross_region: m.cross_region(),
    }
}

/// Rough encoded size, for builder capacity.
pub(crate) fn match_len(m: &MatchInfo) -> usize {
    128 + m.teams.iter().flatten().map(|p| p.len() + 8).sum::<usize>()
}
