//! `ukvtpm`: the one user-facing command (DESIGN §9).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
