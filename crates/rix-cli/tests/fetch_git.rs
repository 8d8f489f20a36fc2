//! `builtins.fetchGit` and `fetchTree { type = "git"; }` of repositories the
//! tests make, against Nix 2.26 (`RIX_NIX_CURRENT`): the same result sets
//! (store paths, `narHash`, `rev`, `revCount`, `lastModified`, `dirtyRev`,
//! `submodules`) and the same errors. The cases are those of Nix's
//! `tests/functional/fetchGit.sh`, `fetchGitRefs.sh` and
//! `fetchGitSubmodules.sh` that apply to repositories on this machine.
//! Without Nix 2.26, rix's results are checked on their own.

mod rixcmd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rixcmd::*;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "protocol.file.allow=always",
            "-c",
            "init.defaultBranch=master",
        ])
        .args(args)
        .env("GIT_AUTHOR_DATE", "2020-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2020-01-01T00:00:00Z")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .output()
        .expect("git is needed by these tests");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn init(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"]);
    git(dir, &["config", "user.name", "rix"]);
    git(dir, &["config", "user.email", "rix@example.org"]);
}

fn write(path: &Path, contents: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, contents).unwrap();
}

/// A directory for repositories, one store, and a home (cache) for each
/// implementation.
struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    store: TempStore,
}

impl Env {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        Env {
            _tmp: tmp,
            dir,
            store: TempStore::new(),
        }
    }

    fn prepare(&self, cmd: &mut Command, home: &str, env: &[(&str, &str)]) {
        let home = self.dir.join(home);
        cmd.current_dir(&self.dir)
            .env("HOME", &home)
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("NIX_CONFIG", NIX_CONFIG)
            .env_remove("_NIX_FORCE_HTTP")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
    }

    fn rix(&self, e: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rix"));
        cmd.args(["--store", &self.store.url(), "instantiate"])
            .args(extra)
            .args(["--eval", "--strict", "--expr", e]);
        self.prepare(&mut cmd, "rix-home", env);
        cmd.output().unwrap()
    }

    fn nix(&self, e: &str, extra: &[&str], env: &[(&str, &str)]) -> Option<Output> {
        let mut cmd = rix_testutil::nix_current("nix-instantiate")?;
        cmd.args(["--store", &self.store.url()])
            .args(extra)
            .args(["--eval", "--strict", "--expr", e]);
        self.prepare(&mut cmd, "nix-home", env);
        Some(cmd.output().unwrap())
    }

    /// rix's result of `e` (which must succeed), the same as Nix's.
    #[track_caller]
    fn same(&self, e: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.rix(e, extra, env);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{e}: {stderr}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        if let Some(nix) = self.nix(e, extra, env) {
            assert!(
                nix.status.success(),
                "{e}: Nix failed: {}",
                String::from_utf8_lossy(&nix.stderr)
            );
            assert_eq!(stdout, String::from_utf8(nix.stdout).unwrap(), "{e}");
        }
        stdout
    }

    /// rix's error for `e`, the same as Nix's (its message and traces).
    #[track_caller]
    fn same_error(&self, e: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.rix(e, extra, env);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{e}: succeeded");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let rix_err = error_part(&stderr);
        if let Some(nix) = self.nix(e, extra, env) {
            assert!(!nix.status.success(), "{e}: Nix succeeded");
            assert_eq!(
                rix_err,
                error_part(&String::from_utf8_lossy(&nix.stderr)),
                "{e}"
            );
        }
        rix_err
    }
}

/// An error report from its `error:` line on (what precedes is warnings and
/// git's own messages, which may start with `error:` too).
fn error_part(stderr: &str) -> String {
    let start = stderr
        .find("error:\n")
        .or_else(|| stderr.rfind("\nerror: ").map(|i| i + 1))
        .unwrap_or(0);
    stderr[start..].to_owned()
}

/// Each fetch as its set without `outPath` but with the path as `o`.
fn sets(fetches: &[String]) -> String {
    format!(
        "map (x: removeAttrs x [\"outPath\"] // {{ o = x.outPath; }}) [ ({}) ]",
        fetches.join(") (")
    )
}

fn out_paths(out: &str) -> Vec<String> {
    out.split("o = \"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_owned())
        .collect()
}

/// `fetchGit.sh`: working trees (clean, dirty, other branches, no commits,
/// an empty commit), commits by `rev`/`ref`/tag, `allRefs`, `name`,
/// `narHash`, `export-ignore`, a bare repository and `file` URLs fetched as
/// remote ones, shallow clones.
#[test]
fn fetch_git_sh() {
    let env = Env::new();
    let repo = env.dir.join("git");
    init(&repo);
    write(&repo.join("hello"), "utrecht\n");
    write(&repo.join(".gitignore"), "");
    git(&repo, &["add", "hello", ".gitignore"]);
    git(&repo, &["commit", "-q", "-m", "Bla1"]);
    let rev1 = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["tag", "-a", "tag1", "-m", "tag1"]);
    write(&repo.join("hello"), "world\n");
    git(&repo, &["commit", "-q", "-m", "Bla2", "-a"]);
    let rev2 = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["tag", "-a", "tag2", "-m", "tag2"]);
    git(&repo, &["checkout", "-q", "-b", "devtest"]);
    write(&repo.join("differentbranch"), "different file\n");
    git(&repo, &["add", "differentbranch"]);
    git(&repo, &["commit", "-q", "-m", "Test2"]);
    git(&repo, &["checkout", "-q", "master"]);
    let devrev = git(&repo, &["rev-parse", "devtest"]);
    let r = repo.display().to_string();

    // A clean working tree, commits by rev, ref, tag; fetchTree.
    let clean = [
        format!("builtins.fetchGit {r}"),
        format!("builtins.fetchGit file://{r}"),
        format!("builtins.fetchGit {{ url = {r}; rev = \"{rev2}\"; }}"),
        format!("builtins.fetchGit {{ url = {r}; rev = \"{rev1}\"; }}"),
        format!("builtins.fetchGit {{ url = {r}; rev = \"{devrev}\"; }}"),
        format!("builtins.fetchGit {{ url = file://{r}; rev = \"{devrev}\"; allRefs = true; }}"),
        format!("builtins.fetchGit {{ url = {r}; ref = \"master\"; }}"),
        format!("builtins.fetchGit {{ url = \"file://{r}\"; ref = \"HEAD\"; }}"),
        format!("builtins.fetchGit {{ url = \"file://{r}\"; ref = \"HEAD\"; name = \"foo\"; }}"),
        format!("builtins.fetchGit {{ url = \"file://{r}\"; ref = \"refs/tags/tag1\"; }}"),
        format!("builtins.fetchGit {{ url = {r}; ref = \"devtest\"; }}"),
        format!("builtins.fetchTree {{ type = \"git\"; url = file://{r}; }}"),
        format!("builtins.fetchTree \"git+file://{r}\""),
        format!("builtins.fetchTree {{ type = \"git\"; url = file://{r}; rev = \"{rev1}\"; }}"),
    ];
    let flakes = ["--extra-experimental-features", "flakes"];
    let out = env.same(&sets(&clean), &flakes, &[]);
    assert!(
        out.contains(&format!("rev = \"{rev2}\"; revCount = 2;")),
        "{out}"
    );
    assert!(
        out.contains(&format!("rev = \"{rev1}\"; revCount = 1;")),
        "{out}"
    );
    assert!(
        out.contains("lastModifiedDate = \"20200101000000\""),
        "{out}"
    );
    let paths = out_paths(&out);
    assert_eq!(paths[0], paths[2]);
    assert!(paths[8].ends_with("-foo"));
    assert_eq!(
        std::fs::read_to_string(Path::new(&paths[5]).join("differentbranch")).unwrap(),
        "different file\n"
    );
    // Cached: the same again (now from the fetcher caches).
    assert_eq!(env.same(&sets(&clean), &flakes, &[]), out);

    // Pure evaluation: a rev is needed.
    env.same(
        &format!("(builtins.fetchGit {{ url = file://{r}; rev = \"{rev2}\"; }}).rev"),
        &["--pure-eval"],
        &[],
    );
    env.same_error(
        &format!("builtins.fetchGit file://{r}"),
        &["--pure-eval"],
        &[],
    );
    env.same_error("builtins.fetchGit \"file:///foo\"", &["--pure-eval"], &[]);

    // A dirty tree: tracked changes only; ref or rev ignore it.
    write(&repo.join("dir1/foo"), "foo\n");
    write(&repo.join("bar"), "bar\n");
    write(&repo.join("dir2/bar"), "bar\n");
    git(&repo, &["add", "dir1/foo"]);
    git(&repo, &["rm", "-q", "hello"]);
    let dirty = [
        format!("builtins.fetchGit {r}"),
        format!("builtins.fetchGit {{ url = {r}; ref = \"master\"; }}"),
        format!("builtins.fetchGit {{ url = {r}; rev = \"{rev2}\"; }}"),
    ];
    let out = env.same(&sets(&dirty), &[], &[]);
    assert!(
        out.contains(&format!("dirtyRev = \"{rev2}-dirty\"")),
        "{out}"
    );
    let p = out_paths(&out);
    assert!(!Path::new(&p[0]).join("hello").exists());
    assert!(!Path::new(&p[0]).join("bar").exists());
    assert!(Path::new(&p[0]).join("dir1/foo").exists());
    // allow-dirty = false.
    let err = env.same_error(
        &format!("builtins.fetchGit {r}"),
        &["--option", "allow-dirty", "false"],
        &[],
    );
    assert!(err.contains("is dirty"), "{err}");

    // Committing keeps the store path; narHash checks.
    git(&repo, &["commit", "-q", "-m", "Bla3", "-a"]);
    let rev3 = git(&repo, &["rev-parse", "HEAD"]);
    let out = env.same(&sets(&[format!("builtins.fetchGit file://{r}")]), &[], &[]);
    assert_eq!(out_paths(&out)[0], p[0]);
    env.same_error(
        &format!("builtins.fetchGit {{ url = {r}; rev = \"{rev2}\"; narHash = \"sha256-B5yIPHhEm0eysJKEsO7nqxprh9vcblFxpJG11gXJus1=\"; }}"),
        &[],
        &[],
    );
    let nar_hash = env
        .same(
            &format!("(builtins.fetchGit {{ url = {r}; rev = \"{rev3}\"; }}).narHash"),
            &[],
            &[],
        )
        .trim()
        .trim_matches('"')
        .to_owned();
    env.same(
        &sets(&[format!(
            "builtins.fetchGit {{ url = {r}; rev = \"{rev3}\"; narHash = \"{nar_hash}\"; }}"
        )]),
        &[],
        &[],
    );

    // A missing rev, a bad rev, a bad ref, a missing ref.
    let missing = "0123456789012345678901234567890123456789";
    env.same_error(
        &format!("builtins.fetchGit {{ url = {r}; rev = \"{missing}\"; }}"),
        &[],
        &[],
    );
    env.same_error(
        &format!("builtins.fetchGit {{ url = {r}; rev = \"abc\"; }}"),
        &[],
        &[],
    );
    env.same_error(
        &format!("builtins.fetchGit {{ url = {r}; ref = \"foo..bar\"; }}"),
        &[],
        &[],
    );
    env.same_error(
        &format!("builtins.fetchGit {{ url = {r}; ref = \"nope\"; }}"),
        &[],
        &[],
    );
    env.same_error(
        &format!("builtins.fetchGit {{ url = {r}; badAttr = 1; }}"),
        &[],
        &[],
    );
    env.same_error(
        &format!("builtins.fetchGit {{ url = {r}; ref = [ ]; }}"),
        &[],
        &[],
    );

    // Another branch checked out, dirty then clean again.
    git(&repo, &["checkout", "-q", &rev2, "-b", "dev"]);
    write(&repo.join("hello"), "dev\n");
    let out = env.same(&sets(&[format!("builtins.fetchGit {r}")]), &[], &[]);
    assert!(out.contains("rev = \"0000000000000000000000000000000000000000\""));
    write(&repo.join("hello"), "world\n");
    env.same(
        &sets(&[format!("builtins.fetchGit {r}")]),
        &["--option", "warn-dirty", "false"],
        &[],
    );

    // export-ignore.
    write(&repo.join("not-exported-file"), "");
    write(&repo.join("exported-wonky"), "");
    write(
        &repo.join(".gitattributes"),
        "/not-exported-file export-ignore\n/exported-wonky export-ignore=wonk\n",
    );
    git(
        &repo,
        &[
            "add",
            "not-exported-file",
            "exported-wonky",
            ".gitattributes",
        ],
    );
    git(&repo, &["commit", "-q", "-m", "Bla6"]);
    let rev5 = git(&repo, &["rev-parse", "HEAD"]);
    let out = env.same(
        &sets(&[
            format!("builtins.fetchGit {{ url = file://{r}; rev = \"{rev5}\"; }}"),
            format!("builtins.fetchGit {r}"),
            format!("builtins.fetchGit {{ url = {r}; exportIgnore = false; }}"),
        ]),
        &[],
        &[],
    );
    let p = out_paths(&out);
    assert!(!Path::new(&p[0]).join("not-exported-file").exists());
    assert!(Path::new(&p[0]).join("exported-wonky").exists());
    assert!(Path::new(&p[2]).join("not-exported-file").exists());

    // Repositories fetched as remote ones: a bare clone, `_NIX_FORCE_HTTP`.
    git(&env.dir, &["clone", "-q", "--bare", "git", "bare.git"]);
    let bare = env.dir.join("bare.git").display().to_string();
    env.same(
        &sets(&[
            format!("builtins.fetchGit {bare}"),
            format!("builtins.fetchGit {{ url = {bare}; ref = \"devtest\"; }}"),
            format!("builtins.fetchGit {{ url = {bare}; rev = \"{rev1}\"; }}"),
            format!("builtins.fetchGit {{ url = {bare}; rev = \"{devrev}\"; allRefs = true; }}"),
        ]),
        &[],
        &[],
    );
    env.same_error(
        &format!("builtins.fetchGit {{ url = {bare}; rev = \"{missing}\"; }}"),
        &[],
        &[],
    );
    let force = [("_NIX_FORCE_HTTP", "1")];
    env.same(
        &sets(&[
            format!("builtins.fetchGit {{ url = \"file://{r}\"; ref = \"refs/tags/tag1\"; }}"),
            format!("builtins.fetchGit {{ url = \"file://{r}\"; ref = \"refs/tags/tag2\"; }}"),
            format!("builtins.fetchGit file://{r}"),
        ]),
        &[],
        &force,
    );

    // Shallow clones need `shallow = true`, and have no revCount.
    git(
        &env.dir,
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            &format!("file://{r}"),
            "shallow",
        ],
    );
    let shallow = env.dir.join("shallow").display().to_string();
    env.same_error(
        &format!("builtins.fetchGit {{ url = {shallow}; ref = \"dev\"; }}"),
        &[],
        &[],
    );
    env.same(
        &sets(&[format!(
            "builtins.fetchTree {{ type = \"git\"; url = \"file://{shallow}\"; ref = \"dev\"; shallow = true; }}"
        )]),
        &flakes,
        &[],
    );

    // No repository, a repository without commits, an empty commit.
    let plain = env.dir.join("plain");
    write(&plain.join("x"), "x\n");
    env.same_error(&format!("builtins.fetchGit {}", plain.display()), &[], &[]);
    let empty = env.dir.join("empty");
    init(&empty);
    let e = format!("builtins.fetchGit {}", empty.display());
    env.same(&sets(std::slice::from_ref(&e)), &[], &[]);
    write(&empty.join("x"), "foo\n");
    git(&empty, &["add", "x"]);
    env.same(&sets(std::slice::from_ref(&e)), &[], &[]);
    git(&empty, &["rm", "-q", "-f", "x"]);
    git(
        &empty,
        &[
            "commit",
            "-q",
            "--allow-empty",
            "--allow-empty-message",
            "-m",
            "",
        ],
    );
    let out = env.same(&sets(&[e]), &[], &[]);
    assert!(out.contains("revCount = 1;"), "{out}");

    // A path with a space, relative to the current directory.
    let spaced = env.dir.join("a b");
    init(&spaced);
    write(&spaced.join("hello"), "utrecht\n");
    git(&spaced, &["add", "hello"]);
    git(&spaced, &["commit", "-q", "-m", "Bla1"]);
    env.same(
        &sets(&["builtins.fetchGit (./. + \"/a b\")".into()]),
        &[],
        &[],
    );
}

/// `fetchGitRefs.sh`: valid and invalid ref names.
#[test]
fn fetch_git_refs_sh() {
    let env = Env::new();
    let repo = env.dir.join("git");
    init(&repo);
    write(&repo.join("hello"), "utrecht\n");
    git(&repo, &["add", "hello"]);
    git(&repo, &["commit", "-q", "-m", "Bla1"]);
    let r = repo.display();
    let base = env.same(
        &format!("(builtins.fetchGit {{ url = {r}; ref = \"master\"; }}).outPath"),
        &[],
        &[],
    );
    for valid in [
        "foox",
        "1337",
        "foo.baz",
        "foo/bar/baz",
        "foo./bar",
        "heads/foo@bar",
        "foo-bar-baz",
        "foo.locke",
    ] {
        git(&repo, &["branch", valid, "master"]);
        let out = env.same(
            &format!("(builtins.fetchGit {{ url = {r}; ref = ''{valid}''; }}).outPath"),
            &[],
            &[],
        );
        assert_eq!(out, base);
        git(&repo, &["branch", "-D", valid]);
    }
    for invalid in [
        "refs///heads/foo",
        "heads/foo/",
        "///heads/foo",
        ".foo",
        "./foo",
        "foo/./bar",
        "foo bar",
        "foo?bar",
        "foo^bar",
        "foo~bar",
        "foo:bar",
        "foo[bar",
        ".refs/foo",
        "refs/heads/foo.",
        "heads/foo..bar",
        "heads/foo.lock",
        "foo.lock/bar",
        "heads/v@{ation",
        "heads/foo\\bar",
        "@",
        "foo/*",
        "*",
        "/foo",
        "",
    ] {
        let err = env.same_error(
            &format!("(builtins.fetchGit {{ url = {r}; ref = ''{invalid}''; }}).outPath"),
            &[],
            &[],
        );
        assert!(
            err.contains("invalid Git branch/tag name"),
            "{invalid}: {err}"
        );
    }
}

/// `fetchGitSubmodules.sh`: submodules of commits and working trees
/// (absolute, relative and nested URLs, `.gitmodules` entries that are not
/// submodules), with and without `submodules`, `exportIgnore`.
#[test]
fn fetch_git_submodules_sh() {
    let env = Env::new();
    let sub = env.dir.join("gitSubmodulesSub");
    let root = env.dir.join("gitSubmodulesRoot");
    init(&sub);
    write(&sub.join("content"), "lorem ipsum\n");
    git(&sub, &["add", "content"]);
    git(&sub, &["commit", "-q", "-m", "Initial commit"]);
    init(&root);
    git(
        &root,
        &["submodule", "add", "-q", &sub.display().to_string(), "sub"],
    );
    git(&root, &["commit", "-q", "-m", "Add submodule"]);
    let rev = git(&root, &["rev-parse", "HEAD"]);
    let r = root.display().to_string();
    let cases = [
        format!("builtins.fetchGit {{ url = file://{r}; rev = \"{rev}\"; }}"),
        format!("builtins.fetchGit {{ url = file://{r}; rev = \"{rev}\"; submodules = true; }}"),
        format!("builtins.fetchGit {{ url = {r}; ref = \"master\"; rev = \"{rev}\"; submodules = true; }}"),
        format!("builtins.fetchGit {{ url = {r}; submodules = true; }}"),
        format!("builtins.fetchGit {{ url = {r}; submodules = true; exportIgnore = false; }}"),
    ];
    let out = env.same(&sets(&cases), &[], &[]);
    let p = out_paths(&out);
    assert_ne!(p[0], p[1]);
    assert_eq!(p[1], p[2]);
    assert!(!Path::new(&p[0]).join("sub/content").exists());
    assert!(Path::new(&p[1]).join("sub/content").exists());
    assert!(!Path::new(&p[1]).join("sub/.git").exists());
    env.same_error(
        &format!("builtins.fetchGit {{ url = {r}; submodules = true; exportIgnore = true; }}"),
        &[],
        &[],
    );

    // `.gitmodules` entries that are not submodules.
    let mut modules = std::fs::read_to_string(root.join(".gitmodules")).unwrap();
    modules.push_str(
        "[submodule \"missing\"]\n\tpath = missing\n\turl = https://example.org/missing.git\n",
    );
    modules.push_str("[submodule \"file\"]\n\tpath = file\n\turl = https://example.org/file.git\n");
    write(&root.join(".gitmodules"), &modules);
    write(&root.join("file"), "foo\n");
    git(&root, &["add", "file", ".gitmodules"]);
    git(&root, &["commit", "-q", "-m", "Add bad submodules"]);
    let rev = git(&root, &["rev-parse", "HEAD"]);
    env.same(
        &sets(&[format!(
            "builtins.fetchGit {{ url = file://{r}; rev = \"{rev}\"; submodules = true; }}"
        )]),
        &[],
        &[],
    );

    // Relative submodule URLs, and a clone whose upstream has them.
    let rel_root = env.dir.join("relRoot");
    init(&rel_root);
    git(
        &rel_root,
        &["submodule", "add", "-q", "../gitSubmodulesSub", "sub"],
    );
    git(&rel_root, &["commit", "-q", "-m", "Add submodule"]);
    let rev2 = git(&rel_root, &["rev-parse", "HEAD"]);
    let clone = env.dir.join("a/b/clone");
    std::fs::create_dir_all(clone.parent().unwrap()).unwrap();
    git(
        &env.dir,
        &[
            "clone",
            "-q",
            &rel_root.display().to_string(),
            &clone.display().to_string(),
        ],
    );
    env.same(
        &sets(&[
            format!(
                "builtins.fetchGit {{ url = file://{}; rev = \"{rev2}\"; submodules = true; }}",
                rel_root.display()
            ),
            format!(
                "builtins.fetchGit {{ url = file://{}; rev = \"{rev2}\"; submodules = true; }}",
                clone.display()
            ),
        ]),
        &[],
        &[],
    );

    // Nested submodules, of a commit and of a working tree.
    let (a, b, c) = (
        env.dir.join("n/a"),
        env.dir.join("n/b"),
        env.dir.join("n/c"),
    );
    init(&c);
    write(&c.join("inside-c"), "");
    write(&c.join("content"), "c\n");
    git(&c, &["add", "."]);
    git(&c, &["commit", "-q", "-m", "c"]);
    init(&b);
    git(
        &b,
        &["submodule", "add", "-q", &c.display().to_string(), "c"],
    );
    write(&b.join("content"), "b\n");
    git(&b, &["add", "."]);
    git(&b, &["commit", "-q", "-m", "b"]);
    init(&a);
    git(
        &a,
        &["submodule", "add", "-q", &b.display().to_string(), "b"],
    );
    write(&a.join("content"), "a\n");
    git(&a, &["add", "."]);
    git(&a, &["commit", "-q", "-m", "a"]);
    git(&a, &["submodule", "update", "-q", "--init", "--recursive"]);
    let rev = git(&a, &["rev-parse", "HEAD"]);
    let out = env.same(
        &sets(&[
            format!(
                "builtins.fetchGit {{ url = \"file://{}\"; rev = \"{rev}\"; submodules = true; }}",
                a.display()
            ),
            format!(
                "builtins.fetchGit {{ url = \"file://{}\"; submodules = true; }}",
                a.display()
            ),
        ]),
        &[],
        &[],
    );
    let p = out_paths(&out);
    assert_eq!(p[0], p[1]);
    assert!(Path::new(&p[0]).join("b/c/inside-c").exists());

    // A dirty submodule makes the working tree dirty.
    write(&a.join("b/content"), "changed\n");
    let out = env.same(
        &sets(&[format!(
            "builtins.fetchGit {{ url = \"file://{}\"; submodules = true; }}",
            a.display()
        )]),
        &[],
        &[],
    );
    assert!(out.contains("dirtyRev"), "{out}");
}
