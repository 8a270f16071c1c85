//! A federation's manifest: its name, each party's URL and pinned certificate, the
//! datasets every party holds (their declared columns) and the disclosure rules every
//! party keeps at least. Every party imports the same manifest; they compare its hash
//! before any share moves.

use crate::field::MAX_PARTIES;
use crate::query::{DeclaredColumn, Rules};
use crate::table::{ColumnType, MAX_LEVELS, check_column_name};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The fewest parties of a federation: with two, the joint totals each party learns
/// at the end, less its own, would be the other's.
pub const MIN_PARTIES: usize = 3;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub parties: Vec<Party>,
    pub datasets: Vec<DeclaredDataset>,
    /// The loosest rules a party may keep; each party may be stricter.
    #[serde(default)]
    pub rules: Rules,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Party {
    pub name: String,
    /// Its server, `https://host:port`.
    pub url: String,
    /// The SHA-256 fingerprint of its TLS certificate, `sha256:<hex>`.
    pub certificate: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclaredDataset {
    pub name: String,
    pub columns: Vec<DeclaredColumn>,
}

impl Manifest {
    /// Parses and checks a manifest (TOML).
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let m: Manifest = toml::from_str(text).map_err(|e| format!("bad manifest: {e}"))?;
        m.check()?;
        Ok(m)
    }

    fn check(&self) -> Result<(), String> {
        let name_ok = |what: &str, n: &str| {
            if swb_api::valid_name(n) {
                Ok(())
            } else {
                Err(format!(
                    "bad {what} name {n:?}: 1 to 63 lowercase letters, digits, - and _"
                ))
            }
        };
        name_ok("federation", &self.name)?;
        if !(MIN_PARTIES..=MAX_PARTIES).contains(&self.parties.len()) {
            return Err(format!(
                "a federation has {MIN_PARTIES} to {MAX_PARTIES} parties (with two, each would learn the other's totals)"
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.parties {
            name_ok("party", &p.name)?;
            if !seen.insert(&p.name) {
                return Err(format!("two parties are named {:?}", p.name));
            }
            if !p.url.starts_with("https://") {
                return Err(format!(
                    "party {:?}: its url must be https:// (parties talk over TLS only)",
                    p.name
                ));
            }
            if !swb_client::tls::is_fingerprint(&p.certificate) {
                return Err(format!(
                    "party {:?}: certificate must be sha256:<64 hex digits> (`swb tls fingerprint`)",
                    p.name
                ));
            }
        }
        let mut pins = std::collections::HashSet::new();
        if let Some(p) =
            (self.parties.iter()).find(|p| !pins.insert(p.certificate.to_ascii_lowercase()))
        {
            return Err(format!(
                "party {:?} pins another party's certificate",
                p.name
            ));
        }
        let mut names = std::collections::HashSet::new();
        for d in &self.datasets {
            name_ok("dataset", &d.name)?;
            if !names.insert(&d.name) {
                return Err(format!("two datasets are named {:?}", d.name));
            }
            let mut cols = std::collections::HashSet::new();
            for c in &d.columns {
                check_column_name(&c.name).map_err(|e| e.0)?;
                if !cols.insert(&c.name) {
                    return Err(format!("dataset {:?}: two columns {:?}", d.name, c.name));
                }
                let levels = c.levels.len();
                match c.kind {
                    ColumnType::Category => {
                        let unique: std::collections::HashSet<_> = c.levels.iter().collect();
                        if levels == 0 || levels > MAX_LEVELS || unique.len() != levels {
                            return Err(format!(
                                "dataset {:?}: categorical column {:?} declares 1 to {MAX_LEVELS} distinct levels",
                                d.name, c.name
                            ));
                        }
                    }
                    _ if levels > 0 => {
                        return Err(format!(
                            "dataset {:?}: only categorical columns declare levels ({:?})",
                            d.name, c.name
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// What parties compare: the SHA-256 of the manifest's canonical JSON (the same
    /// for two TOML texts that say the same).
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("serializable");
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    pub fn party(&self, name: &str) -> Option<(usize, &Party)> {
        self.parties
            .iter()
            .enumerate()
            .find(|(_, p)| p.name == name)
    }

    pub fn dataset(&self, name: &str) -> Option<&DeclaredDataset> {
        self.datasets.iter().find(|d| d.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn text(parties: usize) -> String {
        let mut t = String::from("name = \"cardio\"\n");
        for (i, n) in ["north", "south", "east", "west"]
            .iter()
            .take(parties)
            .enumerate()
        {
            let c = (b'a' + i as u8) as char;
            t += &format!(
                "[[parties]]\nname = \"{n}\"\nurl = \"https://127.0.0.1:{}\"\ncertificate = \"{}\"\n",
                7000 + i,
                pin(c)
            );
        }
        t += "[[datasets]]\nname = \"patients\"\ncolumns = [{ name = \"age\", type = \"int\" }, \
              { name = \"sex\", type = \"category\", levels = [\"f\", \"m\"] }]\n";
        t
    }

    #[test]
    fn manifests_parse_and_hash_by_content() {
        let m = Manifest::parse(&text(3)).unwrap();
        assert_eq!(m.parties.len(), 3);
        assert_eq!(m.rules, Rules::default());
        let spaced = text(3).replace(" = ", "=");
        assert_eq!(Manifest::parse(&spaced).unwrap().hash(), m.hash());
        assert_ne!(Manifest::parse(&text(4)).unwrap().hash(), m.hash());
    }

    #[test]
    fn bad_manifests_say_why() {
        let cases = [
            (text(2), "3 to"),
            (text(3).replace("https://", "http://"), "https"),
            (
                text(3).replace(&pin('b'), &pin('a')),
                "another party's certificate",
            ),
            (text(3).replace(&pin('b'), "sha256:xyz"), "64 hex"),
            (text(3).replace("\"south\"", "\"north\""), "two parties"),
            (
                text(3).replace("levels = [\"f\", \"m\"]", "levels = []"),
                "levels",
            ),
            (
                text(3).replace("name = \"cardio\"", "name = \"Cardio\""),
                "federation name",
            ),
            (text(3) + "verify = false\n", "unknown field"),
        ];
        for (t, want) in cases {
            let e = Manifest::parse(&t).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
