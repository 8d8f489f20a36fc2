//! The `github`, `gitlab` and `sourcehut` schemes (Nix's
//! `GitArchiveInputScheme`s in `libfetchers/github.cc`): a repository on a
//! forge, fetched as the archive of one commit. Without `rev`, the forge's API
//! resolves `ref` (default `HEAD`) to a commit first. The tree of a commit is
//! remembered in the fetcher cache (domain `gitRevToTree`, key `{rev, store}`
//! → `{narHash, lastModified, storePath}`; Nix records the Git tree hash in
//! `gitRevToTreeHash` and `gitRevToLastModified` instead), so a locked input
//! is downloaded once; one whose `narHash` names a valid store path is not
//! downloaded at all.

use rix_formats::flake_ref::{AttrValue, Attrs, InputType};
use rix_formats::store_path::StorePath;

use crate::error::{FetchError, Result};
use crate::input::Input;
use crate::Fetcher;

fn host(input: &Input) -> String {
    input.get_str("host").map(str::to_owned).unwrap_or_else(|| {
        match input.ty {
            InputType::Gitlab => "gitlab.com",
            InputType::Sourcehut => "git.sr.ht",
            _ => "github.com",
        }
        .to_owned()
    })
}

fn owner_repo(input: &Input) -> Result<(&str, &str)> {
    let get = |n: &str| {
        input
            .get_str(n)
            .ok_or_else(|| FetchError::msg(format!("attribute '{n}' missing")))
    };
    Ok((get("owner")?, get("repo")?))
}

/// `getDownloadUrl`: the archive of commit `rev`.
pub fn download_url(input: &Input, rev: &str) -> Result<String> {
    let host = host(input);
    let (owner, repo) = owner_repo(input)?;
    Ok(match input.ty {
        InputType::Gitlab => format!(
            "https://{host}/api/v4/projects/{owner}%2F{repo}/repository/archive.tar.gz?sha={rev}"
        ),
        InputType::Sourcehut => format!("https://{host}/{owner}/{repo}/archive/{rev}.tar.gz"),
        _ if host != "github.com" => {
            format!("https://{host}/api/v3/repos/{owner}/{repo}/tarball/{rev}")
        }
        _ => format!("https://{host}/{owner}/{repo}/archive/{rev}.tar.gz"),
    })
}

/// `getRevFromRef`: the commit `ref` names, from the forge's API.
fn rev_from_ref(f: &Fetcher<'_>, input: &Input, git_ref: &str) -> Result<String> {
    let host = host(input);
    let (owner, repo) = owner_repo(input)?;
    let read_json = |url: &str| -> Result<serde_json::Value> {
        let file = f.download_file(url, "source", &[])?;
        let text = String::from_utf8_lossy(&f.read_file(&file.store_path)?).into_owned();
        serde_json::from_str(&text)
            .map_err(|e| FetchError::msg(format!("cannot parse the answer of '{url}': {e}")))
    };
    let rev = match input.ty {
        InputType::Gitlab => {
            let url = format!(
                "https://{host}/api/v4/projects/{owner}%2F{repo}/repository/commits?ref_name={git_ref}"
            );
            let json = read_json(&url)?;
            match json.as_array() {
                Some(a) if a.is_empty() => {
                    return Err(FetchError::msg(
                        "No commits returned by GitLab API -- does the git ref really exist?",
                    ))
                }
                Some(a) => a[0]["id"].as_str().map(str::to_owned),
                None => None,
            }
            .ok_or_else(|| {
                FetchError::msg(format!("Unexpected response received from GitLab: {json}"))
            })?
        }
        InputType::Sourcehut => {
            let base = format!("https://{host}/{owner}/{repo}");
            let refs_file = f.download_file(&format!("{base}/info/refs"), "source", &[])?;
            let refs = String::from_utf8_lossy(&f.read_file(&refs_file.store_path)?).into_owned();
            let mut wanted: Vec<String> = vec![
                format!("refs/heads/{git_ref}"),
                format!("refs/tags/{git_ref}"),
            ];
            if git_ref == "HEAD" {
                let head = f.download_file(&format!("{base}/HEAD"), "source", &[])?;
                let line = String::from_utf8_lossy(&f.read_file(&head.store_path)?).into_owned();
                let target = line
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("ref: "))
                    .map(|t| t.split_whitespace().next().unwrap_or_default().to_owned())
                    .ok_or_else(|| {
                        FetchError::msg(format!(
                            "in '{}', couldn't resolve HEAD ref '{git_ref}'",
                            input.to_url_string()
                        ))
                    })?;
                wanted = vec![target];
            }
            refs.lines()
                .filter_map(|l| l.split_once('\t'))
                .find(|(_, r)| wanted.iter().any(|w| w == r))
                .map(|(id, _)| id.to_owned())
                .ok_or_else(|| {
                    FetchError::msg(format!(
                        "in '{}', couldn't find ref '{git_ref}'",
                        input.to_url_string()
                    ))
                })?
        }
        _ => {
            let url = if host == "github.com" {
                format!("https://api.{host}/repos/{owner}/{repo}/commits/{git_ref}")
            } else {
                format!("https://{host}/api/v3/repos/{owner}/{repo}/commits/{git_ref}")
            };
            let json = read_json(&url)?;
            json["sha"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| FetchError::msg(format!("no commit in the answer of '{url}'")))?
        }
    };
    if rev.len() != 40 || !rev.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FetchError::msg(format!("invalid Git revision '{rev}'")));
    }
    Ok(rev)
}

/// `GitArchiveInputScheme::getAccessor` (with `downloadArchive`).
pub(crate) fn fetch(f: &Fetcher<'_>, input: &Input) -> Result<(StorePath, Input)> {
    let mut input = input.clone();
    let rev = match input.rev() {
        Some(r) => r.to_owned(),
        None => {
            let r = input.git_ref().unwrap_or("HEAD").to_owned();
            rev_from_ref(f, &input, &r)?
        }
    };
    input.attrs.remove("ref");
    input.set("rev", AttrValue::Str(rev.clone()));
    let key: Attrs = [("rev".to_owned(), AttrValue::Str(rev.clone()))]
        .into_iter()
        .collect();
    if let Some(hit) = f.cache.lookup_store_path("gitRevToTree", &key, f.store)? {
        if let (Some(AttrValue::Str(h)), Some(AttrValue::Int(t))) =
            (hit.value.get("narHash"), hit.value.get("lastModified"))
        {
            if let Ok(nar_hash) =
                rix_formats::Hash::parse_any(h, Some(rix_formats::HashAlgo::Sha256))
            {
                let path = f.store_as(&hit.store_path, &nar_hash, input.name())?;
                input.set("lastModified", AttrValue::Int(*t));
                return Ok((path, input));
            }
        }
    }
    let url = download_url(&input, &rev)?;
    // The archive is not cached under its URL (a commit's archive never
    // changes): unpacked once, remembered by commit.
    let result = f.download_tarball(&url, input.name(), &[])?;
    let mut value = Attrs::new();
    value.insert("narHash".into(), AttrValue::Str(result.nar_hash.to_sri()));
    value.insert("lastModified".into(), AttrValue::Int(result.last_modified));
    f.cache
        .upsert_store_path("gitRevToTree", &key, f.store, &value, &result.store_path)?;
    input.set("lastModified", AttrValue::Int(result.last_modified));
    Ok((result.store_path, input))
}
