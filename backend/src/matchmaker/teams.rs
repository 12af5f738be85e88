//! Team balancing: split a match's tickets into equal-size teams, keeping
//! parties whole, so that team skill totals are as close as possible.
//!
//! Greedy "largest first into the weakest team that has room" (a snake draft
//! that respects party sizes), falling back to best-fit packing when the greedy
//! order cannot fit the parties, then a small local search that swaps
//! equal-sized tickets between the strongest and the weakest team while that
//! narrows the gap. Cost: O(k log k + k² × swaps) for k tickets, k ≤ 200.

/// One ticket to place: its player count and rating (per player).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Item {
    pub size: u32,
    pub rating: f64,
}

impl Item {
    fn weight(self) -> f64 {
        self.rating * f64::from(self.size)
    }
}

/// Splits `items` into `teams` teams of exactly `team_size` players, or `None`
/// if the sizes cannot be packed. Returns item indices per team.
pub(crate) fn balance(items: &[Item], teams: usize, team_size: u32) -> Option<Vec<Vec<usize>>> {
    let total: u32 = items.iter().map(|i| i.size).sum();
    if total != team_size * teams as u32 || items.iter().any(|i| i.size == 0 || i.size > team_size) {
        return None;
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| {
        items[b]
            .size
            .cmp(&items[a].size)
            .then(items[b].rating.total_cmp(&items[a].rating))
    });
    let mut out = place(items, &order, teams, team_size, true)
        .or_else(|| place(items, &order, teams, team_size, false))?;
    improve(items, &mut out);
    Some(out)
}

/// Places items in `order`: into the weakest team with room (`weakest`), or
/// into the fullest team with room (best fit, for hard packings).
fn place(
    items: &[Item],
    order: &[usize],
    teams: usize,
    team_size: u32,
    weakest: bool,
) -> Option<Vec<Vec<usize>>> {
    let mut out = vec![Vec::new(); teams];
    let mut room = vec![team_size; teams];
    let mut sum = vec![0.0f64; teams];
    for &i in order {
        let it = items[i];
        let fits = (0..teams).filter(|&t| room[t] >= it.size);
        let t = if weakest {
            fits.min_by(|&a, &b| sum[a].total_cmp(&sum[b]).then(room[b].cmp(&room[a])))?
        } else {
            fits.min_by_key(|&t| room[t])?
        };
        out[t].push(i);
        room[t] -= it.size;
        sum[t] += it.weight();
    }
    Some(out)
}

fn team_sum(items: &[Item], team: &[usize]) -> f64 {
    team.iter().map(|&i| items[i].weight()).sum()
}

/// Swaps equal-size tickets between the strongest and weakest team while the
/// gap between them shrinks.
fn improve(items: &[Item], teams: &mut [Vec<usize>]) {
    if teams.len() < 2 {
        return;
    }
    for _ in 0..(4 * items.len()) {
        let sums: Vec<f64> = teams.iter().map(|t| team_sum(items, t)).collect();
        let hi = (0..teams.len())
            .max_by(|&a, &b| sums[a].total_cmp(&sums[b]))
            .unwrap_or(0);
        let lo = (0..teams.len())
            .min_by(|&a, &b| sums[a].total_cmp(&sums[b]))
            .unwrap_or(0);
        let gap = sums[hi] - sums[lo];
        if gap <= 0.0 {
            return;
        }
        let mut best: Option<(usize, usize, f64)> = None;
        for (ai, &a) in teams[hi].iter().enumerate() {
            for (bi, &b) in teams[lo].iter().enumerate() {
                if items[a].size != items[b].size {
                    continue;
                }
                let d = items[a].weight() - items[b].weight();
                let new_gap = (gap - 2.0 * d).abs();
                if d > 0.0 && new_gap < gap && best.is_none_or(|(_, _, g)| new_gap < g) {
                    best = Some((ai, bi, new_gap));
                }
            }
        }
        let Some((ai, bi, _)) = best else { return };
        let a = teams[hi][ai];
        teams[hi][ai] = teams[lo][bi];
        teams[lo][bi] = a;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(size: u32, rating: f64) -> Item {
        Item { size, rating }
    }

    #[test]
    fn solo_five_v_five_is_balanced() {
        let items: Vec<Item> = [
            1500., 1510., 1490., 1520., 1480., 1505., 1495., 1515., 1485., 1500.,
        ]
        .iter()
        .map(|&r| item(1, r))
        .collect();
        let teams = balance(&items, 2, 5).unwrap();
        assert!(teams.iter().all(|t| t.len() == 5));
        let gap = (team_sum(&items, &teams[0]) - team_sum(&items, &teams[1])).abs();
        assert!(gap <= 10.0, "gap {gap}");
    }

    #[test]
    fn parties_stay_whole_and_hard_packings_work() {
        // 3+2 and 3+2: the greedy order must not put both 3s together.
        let items = vec![item(3, 1500.), item(3, 1600.), item(2, 1400.), item(2, 1450.)];
        let teams = balance(&items, 2, 5).unwrap();
        for t in &teams {
            assert_eq!(t.iter().map(|&i| items[i].size).sum::<u32>(), 5);
        }
        // 4 + 3 + 3 cannot make two teams of 5.
        assert!(balance(&[item(4, 1.), item(3, 1.), item(3, 1.)], 2, 5).is_none());
        // Battle royale: 25 squads of 4 from mixed parties.
        let mut br = Vec::new();
        for i in 0..20 {
            br.push(item(4, 1000. + i as f64));
        }
        for i in 0..5 {
            br.push(item(2, 1000. + i as f64));
        }
        for i in 0..10 {
            br.push(item(1, 1000. + i as f64));
        }
        let teams = balance(&br, 25, 4).unwrap();
        assert_eq!(teams.len(), 25);
        for t in &teams {
            assert_eq!(t.iter().map(|&i| br[i].size).sum::<u32>(), 4);
        }
    }
}
