//! The generated VM tests' scripts, proven here without nixpkgs: each generated test file is evaluated by the
//! real Nix with a stand-in for `pkgs` (runNixOSTest returns its argument, so `testScript` is the very text the
//! test driver would run, interpolations and all), and every script is compiled by Python and checked against the
//! NixOS test driver's API: each name it uses is the driver's, a machine's, Python's or its own, and each method
//! called on a machine is one the driver's machine class defines. Then, structurally, every health check, admin
//! action, `[test]` step (on its node, with its host), upgrade, federation step and mail step of every manifest is
//! a call in the scripts, and every deployment test proves its repeatability.
//!
//! The driver's API below was read from nixpkgs:
//! - `nixos/lib/test-driver/src/test_driver/driver.py`, `Driver.test_symbols`: the script's globals;
//! - `nixos/lib/test-driver/src/test_driver/machine/__init__.py`, `BaseMachine` and `QemuMachine`: the methods.
//!
//! Where nixpkgs and a usable KVM exist, the tests run in the `vm-tests` harness.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use fedigen::manifest::Manifest;
use serde_json::Value;

mod support;

#[path = "support/driver.rs"]
mod driver;

use driver::{
    DRIVER_GLOBALS, MACHINE_METHODS, Script, evaluate_scripts, generated_tests, pythonize,
};
use support::{nix_command, repository};

/// The checker: compiles each script and reports, as JSON, its problems and its machine calls
/// (`[machine, method, first argument when a string constant]`), the calls of plain functions with a string
/// (`["", function, argument]`, such as `subtest`) and the texts an output must contain (`["", "in", text]`).
const CHECKER: &str = r#"
import ast, builtins, json, sys

request = json.load(sys.stdin)
report = {}
for name, entry in request["scripts"].items():
    problems, calls = [], []
    machines = set(entry["machines"])
    if len(machines) == 1:
        machines.add("machine")
    try:
        tree = ast.parse(entry["script"], name, "exec")
        compile(tree, name, "exec")
    except SyntaxError as e:
        report[name] = {"problems": [f"line {e.lineno}: {e.msg}"], "calls": [], "bound": []}
        continue
    defined = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defined.add(node.name)
            defined.update(a.arg for a in node.args.args + node.args.kwonlyargs)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.comprehension):
            for target in ast.walk(node.target):
                if isinstance(target, ast.Name):
                    defined.add(target.id)
    known = set(request["globals"]) | machines | defined | set(dir(builtins))
    for node in ast.walk(tree):
        # What the driver's pyflakes run refuses too (runNixOSTest lints unless skipLint).
        if isinstance(node, ast.JoinedStr) and not any(isinstance(v, ast.FormattedValue) for v in node.values):
            problems.append(f"line {node.lineno}: an f-string without placeholders")
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in known:
            problems.append(f"line {node.lineno}: `{node.id}` is no name the test driver defines")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name) and node.func.value.id in machines:
            method = node.func.attr
            if method not in request["methods"]:
                problems.append(f"line {node.lineno}: `{node.func.value.id}.{method}` is no method of the driver's machines")
            first = node.args[0] if node.args else None
            text = first.value if isinstance(first, ast.Constant) else None
            if isinstance(first, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in first.values)
            calls.append([node.func.value.id, method, text])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            calls.append(["", node.func.id, node.args[0].value])
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) \
                and isinstance(node.left.value, str) and isinstance(node.ops[0], ast.In):
            calls.append(["", "in", node.left.value])
    # The names the script binds at its top level (not inside its functions).
    bound = set()
    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(child.name)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                bound.update((a.asname or a.name).split(".")[0] for a in child.names)
            elif not isinstance(child, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                    bound.add(child.id)
                visit(child)
    visit(tree)
    report[name] = {"problems": problems, "calls": calls, "bound": sorted(bound)}
json.dump(report, sys.stdout)
"#;

/// The tracer: runs a script as the driver would (`exec` with the driver's globals and a global per machine, so
/// `globals()` is the driver's symbols), against stand-in machines that record every call with its arguments, every
/// call of a function the script defines (`sys.setprofile`), every subtest and assertion (rewritten to record their
/// source and go on: the outputs are stand-ins) and every text an assertion looks for in an output. A method the
/// driver's machines lack, or an exception of the script, is a problem. The shared tests (lib/deployment.nix,
/// lib/migration.nix) loop over an operator's data, so what they do is seen only by running them: the trace reads
/// like the script the test runs, one literal call a line.
const TRACER: &str = r#"
import ast, contextlib, json, re, sys

request = json.load(sys.stdin)
methods = set(request["methods"])
report = {}
run = None


def show(value):
    """A value as the trace writes it: a machine by its name, anything else as JSON (as builtins.toJSON quotes)."""
    if isinstance(value, Machine):
        return value.python
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    try:
        return json.dumps(value, ensure_ascii=False)
    except TypeError:
        return type(value).__name__


class Run:
    """One script's run: the trace's lines (indented by subtest), its calls as the checker reports them, its
    problems."""

    def __init__(self):
        self.lines, self.calls, self.problems, self.depth = [], [], [], 0

    def add(self, line, call=None):
        self.lines.append("    " * self.depth + line)
        if call is not None:
            self.calls.append(call)


class Output(str):
    """What a machine's command printed: empty, and holding every text an assertion looks for (recorded)."""

    def __contains__(self, text):
        run.add(f"{show(text)} in output", ["", "in", text])
        return True

    def strip(self, chars=None):
        return Output(str.strip(self, chars))


class Machine:
    """A node: each method the driver's machines have, recording its call and returning what `stand_in` prints."""

    def __init__(self, python):
        self.python = python
        self.name = python

    def __getattr__(self, method):
        if method.startswith("__"):
            raise AttributeError(method)
        if method not in methods:
            run.problems.append(f"`{self.python}.{method}` is no method of the driver's machines")

        def call(*args, **kwargs):
            first = args[0] if args and isinstance(args[0], str) else None
            shown = [show(a) for a in args] + [f"{k}={show(v)}" for k, v in kwargs.items()]
            run.add(f"{self.python}.{method}({', '.join(shown)})", [self.python, method, first])
            if method == "execute":
                return (0, Output(""))
            return Output(stand_in(args[0] if args and isinstance(args[0], str) else ""))

        return call


def stand_in(command):
    """What a command prints in the trace: a store path for `readlink` (`/nix/store/booted-system`, or the
    specialisation's name), a digest for `sha256sum`, and an object
    in the bucket for a step that prints `object: <url>` (its FEDIGEN_MEDIA_PREFIX), so the loops over them run."""
    if command.startswith("readlink"):
        # The running system, or one of its specialisations by name.
        special = re.search(r"/specialisation/([^/ ]+)$", command)
        return "/nix/store/" + (special.group(1) if special else "booted-system")
    if "sha256sum" in command:
        return "0" * 64 + "  /tmp/stand-in"
    prefix = re.search(r"FEDIGEN_MEDIA_PREFIX='([^']*)'", command)
    if prefix and "object: " in command:
        return f"object: {prefix.group(1)}stand-in\n"
    return ""


@contextlib.contextmanager
def subtest(name):
    """The driver's subtest: the lines inside it are indented in the trace."""
    run.add(f"with subtest({show(name)}):", ["", "subtest", name])
    run.depth += 1
    try:
        yield
    finally:
        run.depth -= 1


def checked(value, source):
    """An assertion of the script, as its source (its truth says nothing: the outputs are stand-ins)."""
    run.add(f"assert {source}")


class NoRaise(ast.NodeTransformer):
    """Every `assert` evaluates its test and records it: the outputs are stand-ins, so the run goes on."""

    def visit_Assert(self, node):
        return ast.copy_location(
            ast.Expr(ast.Call(ast.Name("__checked__", ast.Load()), [node.test, ast.Constant(ast.unparse(node.test))], [])),
            node)


def recorder(name):
    """Another of the driver's globals (start_all, …): its call recorded."""
    def call(*args, **kwargs):
        run.add(f"{name}({', '.join(show(a) for a in args)})", ["", name, args[0] if args and isinstance(args[0], str) else None])
    return call


for name, entry in request["scripts"].items():
    run = Run()
    symbols = {m: Machine(m) for m in entry["machines"]}
    for g in request["globals"]:
        symbols[g] = recorder(g)
    symbols["subtest"] = subtest
    symbols["__checked__"] = checked
    tree = NoRaise().visit(ast.parse(entry["script"], "<script>", "exec"))
    ast.fix_missing_locations(tree)
    code = compile(tree, "<script>", "exec")

    def profile(frame, event, arg):
        # A call of a function the script defines, with its arguments.
        if event == "call" and frame.f_code.co_filename == "<script>" and frame.f_code.co_name.isidentifier() \
                and frame.f_code.co_name != "<module>":
            names = frame.f_code.co_varnames[:frame.f_code.co_argcount]
            args = [frame.f_locals[n] for n in names]
            run.add(f"{frame.f_code.co_name}({', '.join(show(a) for a in args)})",
                    ["", frame.f_code.co_name, args[0] if args and isinstance(args[0], str) else None])

    sys.setprofile(profile)
    try:
        exec(code, symbols, None)
    except Exception as e:
        import traceback
        run.problems.append("the script raised: " + "".join(traceback.format_exception(e)[-3:]))
    finally:
        sys.setprofile(None)
    report[name] = {"lines": run.lines, "calls": run.calls, "problems": run.problems}
json.dump(report, sys.stdout, ensure_ascii=False)
"#;

/// What the checker says of each script.
#[derive(Debug)]
struct Checked {
    problems: Vec<String>,
    /// `(machine, method, first argument)`: the script's literal calls, or for a shared test the calls of its run.
    calls: Vec<(String, String, Option<String>)>,
    /// A shared test's run as the tracer wrote it, one call, subtest or assertion a line (empty for the others).
    trace: String,
    /// The names the script binds at its top level (the checker's).
    bound: Vec<String>,
}

/// Runs a Python program with a JSON request on its input; its JSON answer.
fn run_python(program: &str, request: &Value) -> Value {
    let mut child = std::process::Command::new("python3")
        .args(["-c", program])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A report's calls, `[machine, method, first argument or null]` each.
fn calls_of(report: &Value) -> Vec<(String, String, Option<String>)> {
    report["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c[0].as_str().unwrap().to_owned(),
                c[1].as_str().unwrap().to_owned(),
                c[2].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// A report's problems.
fn problems_of(report: &Value) -> Vec<String> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

/// The request both Python programs read: the driver's names and the scripts.
fn request(scripts: &BTreeMap<String, Script>) -> Value {
    serde_json::json!({
        "globals": DRIVER_GLOBALS,
        "methods": MACHINE_METHODS,
        "scripts": scripts.iter().map(|(name, s)| (name.clone(), serde_json::json!({
            "script": s.text, "machines": s.machines,
        }))).collect::<serde_json::Map<_, _>>(),
    })
}

/// Runs the checker over scripts.
fn check_scripts(scripts: &BTreeMap<String, Script>) -> BTreeMap<String, Checked> {
    let report = run_python(CHECKER, &request(scripts));
    report
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, v)| {
            let checked = Checked {
                problems: problems_of(v),
                calls: calls_of(v),
                trace: String::new(),
                bound: v["bound"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap().to_owned())
                    .collect(),
            };
            (name.clone(), checked)
        })
        .collect()
}

/// Runs the tracer over scripts: each one's report as `Checked`, the trace its calls.
fn trace_scripts(scripts: &BTreeMap<String, Script>) -> BTreeMap<String, Checked> {
    let report = run_python(TRACER, &request(scripts));
    report
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, v)| {
            let lines: Vec<&str> = v["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap())
                .collect();
            let checked = Checked {
                problems: problems_of(v),
                calls: calls_of(v),
                trace: lines.join("\n") + "\n",
                bound: Vec::new(),
            };
            (name.clone(), checked)
        })
        .collect()
}

/// Whether a test calls a shared test of lib/ (a deployment or migration test): its script loops over the data.
fn is_shared(file: &str) -> bool {
    file.starts_with("deployment-") || file.starts_with("migrate-")
}

/// Every script, once (the evaluation and the checker are the costly parts).
fn all() -> &'static (BTreeMap<String, Script>, BTreeMap<String, Checked>) {
    static ALL: std::sync::OnceLock<(BTreeMap<String, Script>, BTreeMap<String, Checked>)> =
        std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let scripts = evaluate_scripts(&generated_tests(&repository()));
        let mut checked = check_scripts(&scripts);
        let shared = scripts
            .iter()
            .filter(|(name, _)| is_shared(name))
            .map(|(name, script)| (name.clone(), script.clone()))
            .collect();
        for (name, traced) in trace_scripts(&shared) {
            let entry = checked.get_mut(&name).unwrap();
            entry.problems.extend(traced.problems);
            entry.calls = traced.calls;
            entry.trace = traced.trace;
        }
        (scripts, checked)
    })
}

/// Every generated test script is valid Python using only the test driver's names and machine methods.
#[test]
fn every_script_is_python_the_driver_runs() {
    let (scripts, checked) = all();
    assert!(scripts.len() >= 9, "{:?}", scripts.keys());
    let problems: Vec<String> = checked
        .iter()
        .flat_map(|(name, c)| c.problems.iter().map(move |p| format!("{name}: {p}")))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // nixpkgs' driver.nix hands the script to the driver's build as an environment variable (the derivation's
    // `testScript`), and Linux refuses a single variable over 128 KiB (MAX_ARG_STRLEN): "Argument list too long"
    // (review-33). The largest generated today is a migration test of four applications with peers, about 45 KB.
    for (name, script) in scripts {
        assert!(
            script.text.len() < 128 * 1024,
            "{name}: the script is {} bytes; the driver's build takes at most 128 KiB",
            script.text.len()
        );
    }
    // Each script reads like nixpkgs' own: one text, not concatenated fragments. A deployment or migration test
    // calls the function every operator shares (lib/deployment.nix, lib/migration.nix), whose script is one
    // indented string too: Python looping over the operator's data, which it reads as one JSON value, and
    // nothing else spliced in but the helpers of lib/common.nix.
    for file in generated_tests(&repository()) {
        let mut text = std::fs::read_to_string(&file).unwrap();
        for shared in ["migration", "deployment"] {
            if text.contains(&format!("import ./lib/{shared}.nix {{")) {
                let lib = file.parent().unwrap().join(format!("lib/{shared}.nix"));
                text = std::fs::read_to_string(lib).unwrap();
                let script = &text[text.find("testScript =").expect("a testScript")..];
                let spliced: Vec<&str> = script
                    .split("${")
                    .skip(1)
                    .map(|s| &s[..s.find(['}', ' ']).unwrap_or(s.len())])
                    .collect();
                assert_eq!(
                    spliced,
                    [
                        "common.pythonHelpers",
                        "common.dataHelpers",
                        "builtins.toJSON"
                    ],
                    "lib/{shared}.nix: the script splices in the helpers and the data's JSON only"
                );
                assert!(
                    script.contains("test = json.loads(${builtins.toJSON (builtins.toJSON "),
                    "lib/{shared}.nix reads the data as one JSON value"
                );
            }
        }
        // The script is one indented string, or a function of the nodes returning one (as nixpkgs' tests that
        // read a node's address write it: `testScript = { nodes, ... }: ''…''`).
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains("testScript = ''") || flat.contains("testScript = { nodes, ... }: ''"),
            "{}: the script is one indented string",
            file.display()
        );
        assert!(
            !text.contains("lib.concatLines"),
            "{}: no concatenated fragments",
            file.display()
        );
    }
}

/// The checker finds what the driver would refuse: a syntax error, a misspelt method, a name the driver
/// does not define — so its silence above means something.
#[test]
fn the_checker_finds_broken_scripts() {
    let scripts: BTreeMap<String, Script> = [
        (
            "syntax",
            "start_all()\nwith subtest(\"x\")\n    server.succeed(\"true\")\n",
        ),
        (
            "method",
            "start_all()\nserver.wait_for_units(\"a.service\")\n",
        ),
        ("name", "start_all()\nservr.succeed(\"true\")\n"),
        ("fstring", "start_all()\nserver.succeed(f\"true\")\n"),
        (
            "fine",
            "start_all()\nserver.wait_for_unit(\"a.service\")\nmachine.succeed(\"true\")\n",
        ),
    ]
    .into_iter()
    .map(|(name, text)| {
        (
            name.to_owned(),
            Script {
                text: text.to_owned(),
                machines: vec!["server".to_owned()],
            },
        )
    })
    .collect();
    let checked = check_scripts(&scripts);
    assert!(
        checked["syntax"].problems[0].starts_with("line 2"),
        "{:?}",
        checked["syntax"]
    );
    assert!(
        checked["method"].problems[0].contains("server.wait_for_units"),
        "{:?}",
        checked["method"]
    );
    assert!(
        checked["name"].problems[0].contains("`servr`"),
        "{:?}",
        checked["name"]
    );
    assert!(
        checked["fstring"].problems[0].contains("f-string without placeholders"),
        "{:?}",
        checked["fstring"]
    );
    assert!(checked["fine"].problems.is_empty(), "{:?}", checked["fine"]);
}

/// The shell syntax errors among `commands` (each checked by `bash -n`, as the machines' shell would read it
/// before running it), each with the command.
fn bash_syntax_errors<'a>(commands: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    commands
        .into_iter()
        .filter_map(|command| {
            let out = std::process::Command::new("bash")
                .args(["-n", "-c", command])
                .output()
                .expect("bash runs");
            (!out.status.success()).then(|| {
                format!(
                    "{}\n  in: {command}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })
        })
        .collect()
}

/// Every command a generated test runs on a machine (`succeed`, `fail`, `execute`, `wait_until_…`: the driver hands
/// it to the machine's bash) is bash: a step of a manifest, a check, a job's command with a quote left open would
/// fail only on the VM. The commands are the checker's literal calls and, for the shared tests, their traces'.
#[test]
fn every_command_the_tests_run_is_bash() {
    let (_, checked) = all();
    let runs = [
        "succeed",
        "fail",
        "execute",
        "wait_until_succeeds",
        "wait_until_fails",
    ];
    let commands: Vec<&str> = checked
        .values()
        .flat_map(|c| &c.calls)
        .filter(|(machine, method, _)| !machine.is_empty() && runs.contains(&method.as_str()))
        .filter_map(|(_, _, command)| command.as_deref())
        .collect();
    assert!(commands.len() > 200, "{} commands", commands.len());
    let mut errors = bash_syntax_errors(commands.iter().copied());
    // A migration job's commands on A go through ssh, which hands the words after the host, joined by spaces, to
    // A's shell (`ssh root@<node> systemctl stop '<unit>' …`): that text must be bash too.
    let repo = repository();
    let mut remote = Vec::new();
    for file in generated_tests(&repo) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("migrate-") {
            continue;
        }
        for machine in test_data(&repo, &name)["machines"].as_array().unwrap() {
            for list in machine["job"]["commands"].as_object().unwrap().values() {
                for argv in list.as_array().into_iter().flatten() {
                    let words: Vec<&str> = argv
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|w| w.as_str().unwrap())
                        .collect();
                    if words.first() == Some(&"ssh") {
                        remote.push(words[2..].join(" "));
                    }
                }
            }
        }
    }
    assert!(
        !remote.is_empty(),
        "the migration jobs stop A's units over ssh"
    );
    errors.extend(bash_syntax_errors(remote.iter().map(String::as_str)));
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    // The check can fail: a quote left open, a `case` without `esac`.
    assert_eq!(
        bash_syntax_errors([
            "echo 'open",
            "case $x in a) ;;",
            "test -s /tmp/x && echo ok"
        ])
        .len(),
        2
    );
}

/// The tracer runs what the checker cannot see: calls on a machine looked up from data, inside loops, and a
/// script that raises; its silence on the shared tests means something.
#[test]
fn the_tracer_runs_scripts_over_their_data() {
    let script = |text: &str| Script {
        text: text.to_owned(),
        machines: vec!["server".to_owned(), "client".to_owned()],
    };
    let scripts: BTreeMap<String, Script> = [
        (
            "loop",
            "data = [\"a.service\", \"b.service\"]\nm = globals()[\"server\"]\nstart_all()\nfor unit in data:\n    with subtest(unit):\n        m.wait_for_unit(unit)\n        output = m.succeed(\"readlink -f /run/current-system\")\n        assert \"x\" in output, output\n",
        ),
        ("method", "m = globals()[\"server\"]\nm.wait_for_units(\"a.service\")\n"),
        ("raises", "data = {}\nserver.succeed(data[\"missing\"])\n"),
    ]
    .into_iter()
    .map(|(name, text)| (name.to_owned(), script(text)))
    .collect();
    let traced = trace_scripts(&scripts);
    assert_eq!(
        traced["loop"].trace,
        "start_all()\nwith subtest(\"a.service\"):\n    server.wait_for_unit(\"a.service\")\n    \
         server.succeed(\"readlink -f /run/current-system\")\n    \"x\" in output\n    assert 'x' in output\n\
         with subtest(\"b.service\"):\n    server.wait_for_unit(\"b.service\")\n    \
         server.succeed(\"readlink -f /run/current-system\")\n    \"x\" in output\n    assert 'x' in output\n"
    );
    assert!(traced["loop"].problems.is_empty(), "{:?}", traced["loop"]);
    assert!(
        has_call(&traced["loop"], "server", &["wait_for_unit"], |a| a
            == "b.service"),
        "{:?}",
        traced["loop"].calls
    );
    assert!(
        traced["method"].problems[0].contains("server.wait_for_units"),
        "{:?}",
        traced["method"]
    );
    assert!(
        traced["raises"].problems[0].contains("KeyError"),
        "{:?}",
        traced["raises"]
    );
}

/// Where a trace checks that the objects a step printed are in a bucket (`stored_objects(<output>, "<prefix>")`).
fn stored_objects_at(trace: &str, prefix: &str) -> Option<usize> {
    let end = format!(", {})", serde_json::to_string(prefix).unwrap());
    let mut at = 0;
    for line in trace.split_inclusive('\n') {
        if line.trim_start().starts_with("stored_objects(") && line.trim_end().ends_with(&end) {
            return Some(at);
        }
        at += line.len();
    }
    None
}

/// A node named as the shared scripts name their own variables would not build (the driver's type stub declares
/// each node a typed global of its Python name; mypy refuses a script binding it to something else): the data
/// refuses every name the scripts bind (`SCRIPT_NAMES`). Fails when a script binds a name the list lacks.
#[test]
fn shared_scripts_bind_only_names_no_node_may_have() {
    let (scripts, checked) = all();
    let mut shared = 0;
    for (file, checked) in checked.iter().filter(|(file, _)| is_shared(file)) {
        shared += 1;
        let missing: Vec<&String> = checked
            .bound
            .iter()
            .filter(|n| !fedigen::template::SCRIPT_NAMES.contains(&n.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{file} binds {missing:?}, which SCRIPT_NAMES (gen/src/template/test_data.rs) must hold"
        );
        for machine in &scripts[file].machines {
            assert!(
                machine == "client" || !checked.bound.contains(machine),
                "{file}: the script binds the node {machine}'s name"
            );
        }
    }
    assert!(shared >= 6, "the example's deployment and migration tests");
}

/// Whether `checked` has a call `machine.method(argument)` whose argument satisfies `test`.
fn has_call(
    checked: &Checked,
    machine: &str,
    methods: &[&str],
    test: impl Fn(&str) -> bool,
) -> bool {
    checked.calls.iter().any(|(m, method, argument)| {
        m == machine && methods.contains(&method.as_str()) && argument.as_deref().is_some_and(&test)
    })
}

/// The test value of a manifest's administrator password, as its unit reads it (`$(cat …)`), when the manifest
/// makes an administrator.
fn admin_password(manifest: &Manifest) -> Option<String> {
    let account = manifest.admin_account.as_ref()?;
    let value = manifest.secrets[&account.password_secret]
        .test_value
        .clone()?;
    Some(value.trim_end_matches('\n').to_owned())
}

/// The command a step runs: its variables exported, then its text.
fn step_command(variables: &[(&str, &str)], run: &str) -> String {
    let mut command = String::new();
    for (name, value) in variables {
        command.push_str(&format!(
            "export {name}='{}'\n",
            value.replace('\'', "'\\''")
        ));
    }
    command + run
}

/// Every manifest's health checks, admin action, steps and mail step are calls of its application test, on the
/// node they belong to, with the application's host; its federation steps calls of its federation test.
#[test]
fn every_manifest_check_and_step_is_in_its_tests() {
    let (_, checked) = all();
    let manifests = Manifest::load_all(&repository().join("templates")).unwrap();
    let mut with_steps = 0;
    for manifest in &manifests {
        let app = &manifest.application.name;
        let test = &checked[&format!("{app}.nix")];
        let host = format!("{}.fedi.test", manifest.application.subdomain);
        for unit in &manifest.health.units {
            assert!(
                has_call(test, "server", &["wait_for_unit"], |a| a == unit),
                "{app}: unit {unit}"
            );
        }
        for check in &manifest.health.http {
            let (machine, url) = match check.port {
                Some(port) => ("server", format!("http://127.0.0.1:{port}{}", check.path)),
                None => ("client", format!("https://{host}{}", check.path)),
            };
            assert!(
                has_call(test, machine, &["wait_until_succeeds"], |a| a
                    .contains(&format!("'{url}'"))
                    && a.contains(&format!("= {}", check.status))),
                "{app}: HTTP check {url} on {machine}"
            );
        }
        if let Some(action) = &manifest.admin_action {
            assert!(
                has_call(test, "server", &["succeed"], |a| a == action.command),
                "{app}: admin action"
            );
        }
        for step in &manifest.test.steps {
            with_steps += 1;
            let machine = match step.on {
                fedigen::manifest::test_plan::StepNode::Server => "server",
                fedigen::manifest::test_plan::StepNode::Client => "client",
            };
            let method = if step.wait {
                "wait_until_succeeds"
            } else {
                "succeed"
            };
            let password = admin_password(manifest);
            let mut variables = vec![("FEDIGEN_HOST", host.as_str())];
            if let Some(password) = &password {
                variables.push(("FEDIGEN_ADMIN", "fedigen_admin"));
                variables.push(("FEDIGEN_ADMIN_PASSWORD", password));
            }
            let command = fedigen::template::until_expected(
                step_command(&variables, &step.run),
                step.wait,
                step.expect.as_deref(),
            );
            assert!(
                has_call(test, machine, &[method], |a| a == command),
                "{app}: step {:?} on {machine}",
                step.description
            );
        }
        if let Some(mail) = &manifest.test.mail {
            let command = step_command(&[("FEDIGEN_HOST", &host)], &mail.run);
            assert!(
                has_call(test, "server", &["succeed"], |a| a == command),
                "{app}: the mail step"
            );
            assert!(
                has_call(test, "mail", &["wait_until_succeeds"], |a| a
                    .contains("8025/api/v1/messages")
                    && a.contains(&format!("'{}'", mail.to))),
                "{app}: the mailbox of {}",
                mail.to
            );
        }
        match &manifest.test.federation {
            Some(federation) => {
                let test = &checked[&format!("federation-{app}.nix")];
                let hosts = ["first", "second"]
                    .map(|n| format!("{}.{n}.test", manifest.application.subdomain));
                for step in &federation.steps {
                    let (machine, own, peer) = match step.on {
                        fedigen::manifest::test_plan::Instance::First => {
                            ("first", &hosts[0], &hosts[1])
                        }
                        fedigen::manifest::test_plan::Instance::Second => {
                            ("second", &hosts[1], &hosts[0])
                        }
                    };
                    let command = fedigen::template::until_expected(
                        step_command(&[("FEDIGEN_HOST", own), ("FEDIGEN_PEER", peer)], &step.run),
                        step.wait,
                        step.expect.as_deref(),
                    );
                    assert!(
                        has_call(test, machine, &["succeed", "wait_until_succeeds"], |a| a
                            == command),
                        "{app}: federation step {:?} on {machine}",
                        step.description
                    );
                }
            }
            None => assert!(
                !checked.contains_key(&format!("federation-{app}.nix")),
                "{app}: a federation test without [test.federation]"
            ),
        }
    }
    assert!(with_steps >= 5, "the manifests' steps: {with_steps}");
    // The issue's steps: Mastodon posts with an image, Pixelfed uploads a photo, PeerTube a video, Matrix
    // users exchange a message, Garage writes an object; one federation test and one mail step at least, and
    // Mastodon's (issue #15): a follow through the API, then the post in the follower's home timeline.
    let runs = |app: &str| -> String {
        manifests
            .iter()
            .find(|m| m.application.name == app)
            .map(|m| {
                m.test
                    .steps
                    .iter()
                    .map(|s| s.run.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    assert!(
        runs("mastodon").contains("/api/v2/media") && runs("mastodon").contains("/api/v1/statuses")
    );
    assert!(runs("pixelfed").contains("/api/v1/media"));
    assert!(runs("peertube").contains("/api/v1/videos/upload"));
    assert!(runs("matrix-synapse").contains("m.room.message"));
    assert!(runs("garage").contains("rclone cat"));
    assert!(manifests.iter().any(|m| m.test.federation.is_some()));
    let federation_runs = |app: &str| -> String {
        manifests
            .iter()
            .find(|m| m.application.name == app)
            .and_then(|m| m.test.federation.as_ref())
            .map(|f| {
                f.steps
                    .iter()
                    .map(|s| s.run.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    let mastodon = federation_runs("mastodon");
    assert!(
        mastodon.contains("/follow") && mastodon.contains("/api/v1/timelines/home"),
        "Mastodon's federation steps: {mastodon:?}"
    );
    assert!(manifests.iter().any(|m| m.test.mail.is_some()));
}

/// Every deployment test proves each machine repeatable in a way that can fail (two evaluations one path, a
/// switch that changes no unit), performs the upgrade its manifest names, and reads its data back afterwards.
#[test]
fn every_deployment_test_proves_repeatability() {
    let (_, checked) = all();
    let repo = repository();
    let (spec, catalog) =
        fedigen::deploy::load_spec(&repo, &repo.join("examples/provider.toml")).unwrap();
    for operator in &spec.operators {
        let file = format!("deployment-{}.nix", operator.name);
        let script = &checked[&file].trace;
        let test = &checked[&file];
        let data = test_data(&repo, &file);
        let shared =
            std::fs::read_to_string(repo.join("vm-tests/generated/lib/deployment.nix")).unwrap();
        let shared = shared.split_whitespace().collect::<Vec<_>>().join(" ");
        for (app, _) in operator.applications.iter().filter(|(_, a)| a.enable) {
            let manifest = &catalog.manifests[app];
            let name = operator.machine_name(app);
            let python = fedigen::deploy::python_name(&name);
            let host = operator.host_name(app, manifest);
            for unit in &manifest.health.units {
                assert!(
                    has_call(test, &python, &["wait_for_unit"], |a| a == unit),
                    "{file}: {python} waits for {unit}"
                );
            }
            let password = admin_password(manifest);
            for step in &manifest.test.steps {
                let mut variables = vec![("FEDIGEN_HOST", host.as_str())];
                if let Some(password) = &password {
                    variables.push(("FEDIGEN_ADMIN", operator.admin.username.as_str()));
                    variables.push(("FEDIGEN_ADMIN_PASSWORD", password));
                }
                let command = fedigen::template::until_expected(
                    step_command(&variables, &step.run),
                    step.wait,
                    step.expect.as_deref(),
                );
                let on = match step.on {
                    fedigen::manifest::test_plan::StepNode::Server => python.as_str(),
                    fedigen::manifest::test_plan::StepNode::Client => "client",
                };
                let count = test
                    .calls
                    .iter()
                    .filter(|(m, _, a)| m == on && a.as_deref() == Some(command.as_str()))
                    .count();
                let expected = if step.recheck { 2 } else { 1 };
                assert_eq!(
                    count, expected,
                    "{file}: step {:?} on {on}",
                    step.description
                );
            }
            // Deployed again: the machine switches to the system it runs, and the units that switch reports are
            // asserted to be none; that comes before the upgrade's switches (there, then back). The tracer's
            // `readlink` of /run/current-system prints /nix/store/booted-system.
            let booted_switch = "/nix/store/booted-system/bin/switch-to-configuration test 2>&1";
            let upgrade_switch = "/nix/store/booted-system/specialisation/fedigen-upgrade/bin/switch-to-configuration test 2>&1";
            let switches: Vec<&str> = test
                .calls
                .iter()
                .filter(|(m, method, a)| {
                    m == &python
                        && method == "succeed"
                        && a.as_deref()
                            .is_some_and(|a| a.contains("switch-to-configuration"))
                })
                .filter_map(|(_, _, a)| a.as_deref())
                .collect();
            // Twice: the first switch after boot starts the units every first switch starts; the second, nothing.
            let mut expected_switches = vec![booted_switch, booted_switch];
            if manifest.test.upgrade.is_some() {
                expected_switches.extend([upgrade_switch, booted_switch]);
            }
            assert_eq!(switches, expected_switches, "{file}: {python}'s switches");
            assert!(
                has_call(test, &python, &["succeed"], |a| a
                    == "readlink -f /run/current-system"),
                "{file}: {python}: the running system read"
            );
            assert!(
                script.contains("assert changed_units(output) - timed == set()"),
                "{file}"
            );
            assert!(
                !script.contains("fedigen-rebuilt"),
                "{file}: a second evaluation inside the test's own evaluation is the same one"
            );
            // The harness evaluates the test twice and rebuilds every machine's toplevel before it runs
            // (the header: vm-tests/README.md); each toplevel named is one of the data's machines.
            let source =
                std::fs::read_to_string(repo.join("vm-tests/generated").join(&file)).unwrap();
            assert!(source.contains("\n#: evaluate_twice = true\n"), "{file}");
            let rebuild = format!("\"nodes.{name}.system.build.toplevel\"");
            let header = source
                .lines()
                .find(|l| l.starts_with("#: rebuild = "))
                .unwrap_or_else(|| panic!("{file}: no `rebuild` in the header"));
            assert!(
                header.contains(&rebuild),
                "{file}: {header} lacks {rebuild}"
            );
            assert_eq!(
                header.matches("system.build.toplevel").count(),
                data["nodes"].as_array().unwrap().len(),
                "{file}: one toplevel rebuilt per machine of the data: {header}"
            );
            let node = data["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["name"] == name)
                .unwrap_or_else(|| panic!("{file}: no node {name} in the data"));
            assert_eq!(
                node["upgrade"]["setting"].as_str(),
                manifest.test.upgrade.as_ref().map(|u| u.setting.as_str()),
                "{file}: {name}'s upgrade"
            );
            if let Some(upgrade) = &manifest.test.upgrade {
                assert!(
                    shared.contains(
                        "specialisation.fedigen-upgrade.configuration.fediversity.${node.application}.${node.upgrade.setting} ="
                    ) && node["application"] == app.as_str(),
                    "{file}: {name}: the upgrade changes {}",
                    upgrade.setting
                );
            }
        }
    }
}

/// `changed_units` of `lib/common.nix` reads switch-to-configuration's report as nixpkgs' switch test states it,
/// and `units_within` matches patterns: run in Python on reports of both kinds.
#[test]
fn switch_reports_are_read_as_the_units_they_name() {
    let expression = format!(
        "(import {}/vm-tests/generated/lib/common.nix {{ pkgs = {{ lib = {{ }}; }}; }}).pythonHelpers",
        repository().display()
    );
    let helpers: String = evaluate_json(&expression);
    let program = format!(
        r#"{helpers}
quiet = "activating the configuration...\nsetting up /etc...\nreloading user units for root...\nrestarting sysinit-reactivation.target\n"
assert changed_units(quiet) == set(), changed_units(quiet)
# The first switch after boot (switch-to-configuration-ng: every active unit new since its first snapshot).
first = quiet + "the following new units were started: sysinit-reactivation.target, systemd-tmpfiles-resetup.service\n"
assert changed_units(first) == FIRST_SWITCH_UNITS, changed_units(first)
assert not changed_units(first + "the following new units were started: nginx.service\n") <= FIRST_SWITCH_UNITS
class Machine:
    def __init__(self, outputs):
        self.outputs = outputs
    def succeed(self, command):
        return self.outputs[command]
show = "systemctl show --property=Id,ActiveState,InvocationID,TriggeredBy '*'"
consists = "systemctl show --property=ConsistsOf,RequiredBy,BoundBy --value sysinit-reactivation.target"
# Shown as systemd shows units: blocks separated by a blank line. A target (switch-to-configuration-ng restarts
# local-fs.target and remote-fs.target on every switch), a unit a timer starts and an inactive one are left out;
# a socket-activated daemon is kept.
before = Machine({{show: "Id=nginx.service\nActiveState=active\nInvocationID=aa\nTriggeredBy=\n\n"
    "Id=sysinit-reactivation.target\nActiveState=active\nInvocationID=bb\nTriggeredBy=\n\n"
    "Id=local-fs.target\nActiveState=active\nInvocationID=ff\nTriggeredBy=\n\n"
    "Id=logrotate.service\nActiveState=active\nInvocationID=cc\nTriggeredBy=logrotate.timer\n\n"
    "Id=systemd-journald.service\nActiveState=active\nInvocationID=jj\nTriggeredBy=systemd-journald.socket systemd-journald-dev-log.socket\n\n"
    "Id=growpart.service\nActiveState=inactive\nInvocationID=\nTriggeredBy=\n"}})
assert unit_invocations(before) == {{"nginx.service": "aa", "systemd-journald.service": "jj"}}, unit_invocations(before)
same = Machine({{consists: "\nsystemd-tmpfiles-resetup.service\n\n"}})
assert restarted_silently(same, {{"nginx.service": "aa", "systemd-tmpfiles-resetup.service": "dd"}},
    {{"nginx.service": "aa", "systemd-tmpfiles-resetup.service": "d2", "new.service": "ee"}}) == []
assert restarted_silently(same, {{"nginx.service": "aa"}}, {{"nginx.service": "a2"}}) == ["nginx.service"]
timers = Machine({{"systemctl show --property=Triggers --value '*.timer'": "logrotate.service\n\nsystemd-tmpfiles-clean.service\n"}})
assert started_by_timers(timers) == {{"logrotate.service", "systemd-tmpfiles-clean.service"}}, started_by_timers(timers)
late = "restarting sysinit-reactivation.target\nthe following new units were started: logrotate.service\n"
assert changed_units(late) - started_by_timers(timers) == set()
busy = ("stopping the following units: mastodon-web.service\n"
        "NOT restarting the following changed units: systemd-fsck@dev-vda.service\n"
        "activating the configuration...\n"
        "reloading the following units: nginx.service\n"
        "restarting the following units: mastodon-sidekiq-all.service, mastodon-streaming-1.service\n"
        "starting the following units: mastodon-web.service\n"
        "the following new units were started: mastodon-extra.timer\n")
assert changed_units(busy) == {{"mastodon-web.service", "systemd-fsck@dev-vda.service", "nginx.service",
    "mastodon-sidekiq-all.service", "mastodon-streaming-1.service", "mastodon-extra.timer"}}, changed_units(busy)
assert units_within({{"mastodon-web.service", "mastodon-streaming.target"}}, ["mastodon-*.service", "mastodon-*.target"])
assert not units_within({{"mastodon-web.service", "nginx.service"}}, ["mastodon-*.service"])
print("ok")
"#
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &program])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pythonize_is_the_drivers() {
    assert_eq!(pythonize("amstelland-mastodon"), "amstelland_mastodon");
    assert_eq!(pythonize("server"), "server");
    assert_eq!(pythonize("9x.y"), "_x_y");
}

/// The template's text of a generated file placed for evaluation: the file in a scratch folder beside a copy of
/// `lib/common.nix`.
fn evaluate_rendered(name: &str, text: &str) -> (Script, Checked) {
    let dir = tempfile::tempdir().unwrap();
    let generated = repository().join("vm-tests/generated");
    std::fs::create_dir_all(dir.path().join("lib")).unwrap();
    std::fs::copy(
        generated.join("lib/common.nix"),
        dir.path().join("lib/common.nix"),
    )
    .unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, text).unwrap();
    let scripts = evaluate_scripts(&[file]);
    let checked = check_scripts(&scripts);
    let (name, script) = scripts.into_iter().next().unwrap();
    let checked = checked.into_iter().find(|(n, _)| *n == name).unwrap().1;
    (script, checked)
}

mod quoting {
    use super::*;
    use proptest::prelude::*;

    /// Text with every hazard of the way: Nix's indented-string escapes (`''`, `${`), quotes, backslashes,
    /// control characters, shell metacharacters, non-ASCII.
    fn text() -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            Just("''".to_owned()),
            Just("${".to_owned()),
            Just("'".to_owned()),
            Just("\"".to_owned()),
            Just("\\".to_owned()),
            Just("\n".to_owned()),
            Just("\r".to_owned()),
            Just("\t".to_owned()),
            Just("$(x)".to_owned()),
            Just("\u{2028}é".to_owned()),
            Just("{verb}".to_owned()),
            "\\PC{0,6}",
        ];
        proptest::collection::vec(fragment, 1..8).prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// A step's description, command and expected text, whatever they hold, reach the script the driver
        /// runs exactly: manifest → template data → Nix (indented or quoted string) → builtins.toJSON → Python.
        #[test]
        fn any_step_text_reaches_the_script_exactly(
            description in text(), run in text(), expect in text(), on_client in any::<bool>()
        ) {
            let repo = repository();
            let mut manifests = Manifest::load_all(&repo.join("templates")).unwrap();
            let mut templates = fedigen::template::Templates::load(&repo, &manifests).unwrap();
            templates.load_tests(&repo).unwrap();
            let manifest = manifests.iter_mut().find(|m| m.application.name == "garage").unwrap();
            manifest.test.steps = vec![fedigen::manifest::test_plan::TestStep {
                description: description.clone(),
                on: if on_client {
                    fedigen::manifest::test_plan::StepNode::Client
                } else {
                    fedigen::manifest::test_plan::StepNode::Server
                },
                run: run.clone(),
                expect: Some(expect.clone()),
                recheck: false,
                wait: false,
            }];
            let text = templates.render_application_test(manifest).unwrap();
            let (_, checked) = evaluate_rendered("garage.nix", &text);
            prop_assert!(checked.problems.is_empty(), "{:?}", checked.problems);
            let command = step_command(&[("FEDIGEN_HOST", "s3.fedi.test")], &run);
            let machine = if on_client { "client" } else { "server" };
            prop_assert!(has_call(&checked, machine, &["succeed"], |a| a == command), "{:?}", checked.calls);
            prop_assert!(has_call(&checked, "", &["subtest"], |a| a == description), "{:?}", checked.calls);
            // An empty expectation holds for any output: the template writes no assertion for it.
            prop_assert!(expect.is_empty() || has_call(&checked, "", &["in"], |a| a == expect), "{:?}", checked.calls);
        }
    }
}

/// The maintainer review of #15 (F0, F3–F6), held as properties of every generated VM test: each test node's
/// failed units are asserted right after its health checks (before any step), the administrator's unit is waited
/// for wherever the module makes it, the test certificate goes where the manifest says the module serves its
/// virtual host, the administrator's mail domain is allowed where the manifest lists allowed domains, Passport
/// tokens carry the scopes the API checks, the deployment machines' partition growing is off, and no test
/// overrides the initial root password a module's environment file sets.
#[test]
fn generated_tests_hold_the_review_fixes() {
    let (scripts, checked) = all();
    let repo = repository();
    let generated = repo.join("vm-tests/generated");
    let common = std::fs::read_to_string(generated.join("lib/common.nix")).unwrap();
    let node = &common[common.find("testNode =").expect("testNode")..];
    assert!(
        node.contains("systemd.services.growpart.enable = lib.mkForce false;"),
        "lib/common.nix: testNode turns growpart off"
    );
    // Before its first step, every node of every test has its failed units asserted (after its health checks).
    for (file, script) in scripts {
        if file.starts_with("migrate-") {
            continue;
        }
        // A shared test's run: its script loops over the data.
        let text = if is_shared(file) {
            &checked[file].trace
        } else {
            &script.text
        };
        let first_step = text.find("with subtest(").unwrap_or(text.len());
        for python in script
            .machines
            .iter()
            .filter(|n| n.as_str() != "client" && n.as_str() != "mail")
        {
            let at = text
                .find(&format!("assert_no_failed_units({python})"))
                .unwrap_or_else(|| panic!("{file}: {python}'s failed units are never asserted"));
            assert!(
                at < first_step,
                "{file}: {python}: failed units asserted after the steps"
            );
            // Its health checks' waits (before the steps; the later subtests wait again, for their own reasons).
            let last_wait = text[..first_step]
                .rfind(&format!("{python}.wait_for_unit("))
                .unwrap_or(0);
            assert!(
                last_wait < at,
                "{file}: {python}: failed units asserted before its units are up"
            );
        }
        assert!(
            !text.contains("PT_INITIAL_ROOT_PASSWORD"),
            "{file}: the initial root password is the module's (from the administrator's secret)"
        );
    }
    let manifests = Manifest::load_all(&repo.join("templates")).unwrap();
    let (spec, catalog) =
        fedigen::deploy::load_spec(&repo, &repo.join("examples/provider.toml")).unwrap();
    for manifest in &manifests {
        let app = &manifest.application.name;
        for step in &manifest.test.steps {
            for call in step.run.split("createToken(").skip(1) {
                let args = &call[..call.find(')').unwrap_or(call.len())];
                assert!(
                    args.contains("\"write\""),
                    "{app}: a Passport token without the `write` scope the API checks: createToken({args})"
                );
            }
        }
        let source = std::fs::read_to_string(generated.join(format!("{app}.nix"))).unwrap();
        if manifest.admin_account.is_some() {
            assert!(
                scripts[&format!("{app}.nix")].text.contains(&format!(
                    "server.wait_for_unit(\"{app}-admin-account.service\")"
                )),
                "{app}.nix waits for the administrator's unit"
            );
        }
        if let Some(path) = &manifest.test.tls_virtual_host {
            let list = path
                .split('.')
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(" ");
            let flat = source.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                flat.contains(&format!("(common.testTls host [ {list} ])")),
                "{app}.nix: the test certificate goes to {path}"
            );
        }
    }
    for operator in &spec.operators {
        let file = format!("deployment-{}.nix", operator.name);
        let text = &checked[&file].trace;
        let data = test_data(&repo, &file);
        let domain = operator.admin.email.rsplit_once('@').unwrap().1;
        for (app, application) in operator.applications.iter().filter(|(_, a)| a.enable) {
            let manifest = &catalog.manifests[app];
            let name = operator.machine_name(app);
            let python = fedigen::deploy::python_name(&name);
            let node = data["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["name"] == name.as_str())
                .unwrap_or_else(|| panic!("{file}: no node {name} in its data"));
            if let Some(account) = &manifest.admin_account
                && application.secrets.contains_key(&account.password_secret)
            {
                assert!(
                    text.contains(&format!(
                        "{python}.wait_for_unit(\"{app}-admin-account.service\")"
                    )),
                    "{file}: {python} waits for its administrator's unit"
                );
            }
            if let Some(list) = &manifest.test.admin_mail_allowlist {
                let key = list.setting.rsplit('.').next().unwrap();
                let value = list
                    .setting
                    .split('.')
                    .fold(&node["settings"], |v, part| &v[part])
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: {key} is set: {}", node["settings"]));
                assert!(
                    value.split(list.separator.as_str()).any(|d| d == domain),
                    "{file}: {key} = {value:?} allows the administrator's domain {domain}"
                );
            }
            if let Some(path) = &manifest.test.tls_virtual_host {
                let list: Vec<&str> = path.split('.').collect();
                assert_eq!(
                    node["virtual_host"],
                    serde_json::json!(list),
                    "{file}: {app}'s test certificate goes to {path}"
                );
            }
        }
    }
}

/// The provider's object-storage test (#14, review-14 Q3–Q5): evaluated and checked like every generated test,
/// it must start every Garage node of the description, wait for the provisioning unit, check `/health` and the
/// cluster's view on every node, test Mastodon's media URL against the bucket, and re-run `storage apply`.
#[test]
fn the_storage_test_covers_the_cluster_and_mastodon_media() {
    let (scripts, checked) = all();
    let script = scripts
        .get("storage.nix")
        .expect("vm-tests/generated/storage.nix is generated for a provider with object storage");
    assert!(
        checked["storage.nix"].problems.is_empty(),
        "{:?}",
        checked["storage.nix"].problems
    );
    let repo = repository();
    let description: Value = serde_json::from_str(
        &std::fs::read_to_string(repo.join("deployments/storage.json")).unwrap(),
    )
    .unwrap();
    let nodes = description["nodes"].as_array().unwrap();
    let garage: Vec<&String> = script
        .machines
        .iter()
        .filter(|m| m.starts_with("garage_"))
        .collect();
    assert_eq!(garage.len(), nodes.len(), "one test node per Garage node");
    for python in &garage {
        for needle in [
            format!("{python}.wait_for_unit(\"garage.service\")"),
            format!("{python}.succeed(health)"),
            format!("{python}.succeed(cluster)"),
        ] {
            assert!(script.text.contains(&needle), "storage.nix lacks {needle}");
        }
    }
    for needle in [
        "wait_for_unit(\"fedigen-storage-apply.service\")",
        "/v2/GetClusterStatus",
        "prefix = \"https://media.",
        "url.startswith(prefix)",
        "assert served == held",
        "--json",
        "report[\"changing_calls\"] == 0",
    ] {
        assert!(script.text.contains(needle), "storage.nix lacks {needle}");
    }
}

/// Review-14 F2/F4: every deployment test whose operator keeps files in buckets has its Garage node (garage.service,
/// the provisioning unit, /health), the S3 and media hosts resolving to it, and for each application's
/// `[[test.object_storage]]` step an assertion that the URLs are in the application's bucket on the media host
/// and serve the bytes Garage holds. Fails on a tree whose deployment tests have no object storage.
#[test]
fn every_deployment_test_with_object_storage_has_its_garage_node_and_proves_the_media_prefix() {
    let (scripts, checked) = all();
    let repo = repository();
    let (spec, catalog) =
        fedigen::deploy::load_spec(&repo, &repo.join("examples/provider.toml")).unwrap();
    assert!(
        spec.provider.object_storage.is_some(),
        "the example has object storage"
    );
    let media = format!("https://media.{}/", spec.provider.domain);
    // The one-node test cluster every test's Garage node gets (lib/common.nix, garageTestCluster).
    let common = std::fs::read_to_string(repo.join("vm-tests/generated/lib/common.nix")).unwrap();
    let cluster = &common[common
        .find("garageTestCluster =")
        .expect("lib/common.nix defines garageTestCluster")..];
    for needle in [
        "replicationFactor = lib.mkForce 1;",
        "settings.bootstrap_peers = lib.mkForce [ ];",
        "endpoints.s3Host = lib.mkForce s3Host;",
        "settings.s3_web.root_domain = lib.mkForce \".web.${s3Host}\";",
    ] {
        assert!(cluster.contains(needle), "garageTestCluster lacks {needle}");
    }
    let mut proven = 0;
    for operator in &spec.operators {
        let stored: Vec<(&String, &fedigen::manifest::Manifest)> = operator
            .applications
            .iter()
            .filter(|(app, a)| a.enable && !catalog.manifests[*app].needs.s3_buckets.is_empty())
            .map(|(app, _)| (app, &catalog.manifests[app]))
            .collect();
        if stored.is_empty() {
            continue;
        }
        let file = format!("deployment-{}.nix", operator.name);
        let script = &checked[&file].trace;
        let test = &checked[&file];
        let data = test_data(&repo, &file);
        assert!(test.problems.is_empty(), "{file}: {:?}", test.problems);
        let garage: Vec<&String> = scripts[&file]
            .machines
            .iter()
            .filter(|m| {
                has_call(test, m, &["wait_for_unit"], |a| {
                    a == "fedigen-storage-apply.service"
                })
            })
            .collect();
        assert_eq!(
            garage.len(),
            1,
            "{file}: one node runs the provisioning unit"
        );
        let garage = garage[0];
        assert!(
            has_call(test, garage, &["wait_for_unit"], |a| a == "garage.service"),
            "{file}: {garage} runs Garage"
        );
        let shared =
            std::fs::read_to_string(repo.join("vm-tests/generated/lib/deployment.nix")).unwrap();
        assert!(
            shared.contains("storageTest = common.garageTestCluster {")
                && shared.contains("s3Host = storage.s3_host;")
                && shared.contains("mediaHost = storage.media_host;"),
            "lib/deployment.nix makes the test's Garage node from the data's storage"
        );
        assert_eq!(
            data["storage"]["s3_host"],
            format!("s3.{}", spec.provider.domain),
            "{file}"
        );
        assert_eq!(
            data["storage"]["media_host"],
            format!("media.{}", spec.provider.domain),
            "{file}"
        );
        for (app, manifest) in stored {
            for step in &manifest.test.object_storage {
                let kinds = &manifest.needs.s3_buckets;
                let bucket = storage_bucket(operator, app, kinds, &step.kind);
                let prefix = format!("{media}{bucket}/");
                assert!(
                    stored_objects_at(script, &prefix).is_some(),
                    "{file}: {app}'s {:?} asserts the prefix {prefix}",
                    step.description
                );
                proven += 1;
            }
        }
        assert!(
            script.contains("assert served_sha256(client, url) == held"),
            "{file}"
        );
    }
    assert!(
        proven >= 3,
        "Mastodon, Pixelfed and PeerTube media are proven ({proven})"
    );
}

/// Review-34: B's job reaches A's machines by their node names (`ssh root@<node>`, `ssh://root@<node>/…`, each
/// database's `source.host` over TCP; a socket directory is local), and the test network's /etc/hosts names a node only by its networking.hostName,
/// which the generated modules set to the machine's name at both sides: every host the job names must be one B's
/// nodes resolve through the data's `hosts_b`. Fails when a name is missing.
#[test]
fn every_host_a_migration_job_reaches_is_one_b_resolves() {
    let repo = repository();
    let (spec, _) =
        fedigen::deploy::load_spec(&repo, &repo.join("examples/provider.toml")).unwrap();
    let mut reached = 0;
    for operator in &spec.operators {
        let file = format!("migrate-{}.nix", operator.name);
        let data = test_data(&repo, &file);
        let resolved: Vec<&str> = data["hosts_b"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|names| {
                names
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap())
            })
            .collect();
        for machine in data["machines"].as_array().unwrap() {
            let mut hosts = Vec::new();
            let mut pending = vec![(&machine["job"], "")];
            while let Some((value, key)) = pending.pop() {
                match value {
                    Value::Object(map) => pending.extend(map.iter().map(|(k, v)| (v, k.as_str()))),
                    Value::Array(list) => pending.extend(list.iter().map(|v| (v, key))),
                    Value::String(text) => {
                        let text = text.strip_prefix("ssh://").unwrap_or(text);
                        if let Some(rest) = text.strip_prefix("root@") {
                            hosts.push(rest.split('/').next().unwrap().to_owned());
                        } else if key == "host" && !text.starts_with('/') {
                            hosts.push(text.to_owned());
                        }
                    }
                    _ => {}
                }
            }
            assert!(!hosts.is_empty(), "{file}: the job reaches no host at A");
            for host in hosts {
                // Under A's node of that name, so that it resolves to A's address (not merely somewhere).
                let under_a = data["hosts_b"][host.as_str()]
                    .as_array()
                    .is_some_and(|names| names.iter().any(|n| n == host.as_str()));
                assert!(
                    under_a,
                    "{file}: B's job reaches {host}, which B's nodes do not resolve to A's node {host} \
                     ({resolved:?})"
                );
                reached += 1;
            }
        }
    }
    assert!(reached > 0);
}

/// Issues #15/#16: every migration test of an operator keeping files in buckets has two object storages (two
/// Garage nodes, each running its provisioning unit, A's under the specification's domain and B's under another),
/// each side's nodes resolving that side's S3 host, B's also A's (the job reads A's buckets); the seed's media is
/// proven in A's bucket before `fedigen migrate run`, the job moves each bucket from A's endpoint to B's, and after
/// the run the client follows the DNS switch and B's Garage holds the objects A held; where every database
/// moves, the media reads back at B from B's media host. Fails on a tree whose migration tests have no Garage.
#[test]
fn every_migration_test_with_object_storage_moves_the_media_between_two_garage_clusters() {
    let (scripts, checked) = all();
    let repo = repository();
    let (spec, catalog) =
        fedigen::deploy::load_spec(&repo, &repo.join("examples/provider.toml")).unwrap();
    let s3_a = format!("s3.{}", spec.provider.domain);
    let mut proven = 0;
    for operator in &spec.operators {
        let stored: Vec<&String> = operator
            .applications
            .iter()
            .filter(|(app, a)| a.enable && !catalog.manifests[*app].state.buckets.is_empty())
            .map(|(app, _)| app)
            .collect();
        if stored.is_empty() {
            continue;
        }
        let file = format!("migrate-{}.nix", operator.name);
        let script = &checked[&file].trace;
        let test = &checked[&file];
        assert!(test.problems.is_empty(), "{file}: {:?}", test.problems);
        let data = test_data(&repo, &file);
        // Two Garage nodes, each provisioned.
        let garage: Vec<&String> = scripts[&file]
            .machines
            .iter()
            .filter(|m| {
                has_call(test, m, &["wait_for_unit"], |a| {
                    a == "fedigen-storage-apply.service"
                }) && has_call(test, m, &["wait_for_unit"], |a| a == "garage.service")
            })
            .collect();
        assert_eq!(
            garage.len(),
            2,
            "{file}: one Garage node per provider: {garage:?}"
        );
        let (garage_a, garage_b) = (garage[0], garage[1]);
        assert!(
            garage_a.ends_with("_a") && garage_b.ends_with("_b"),
            "{file}: {garage_a} is A's, {garage_b} B's"
        );
        // Two clusters, two domains: the shared test makes one Garage test cluster of each side's storage, and
        // B's machines use B's (objectStorageB).
        let s3_host = |side: &str| {
            data[side]["s3_host"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: no {side}"))
                .to_owned()
        };
        assert_eq!(s3_host("storage_a"), s3_a, "{file}: A's S3 host");
        let s3_b = s3_host("storage_b");
        assert_ne!(s3_b, s3_a, "{file}: B's S3 host is B's own");
        let media_b = s3_b.replacen("s3.", "media.", 1);
        let shared =
            std::fs::read_to_string(repo.join("vm-tests/generated/lib/migration.nix")).unwrap();
        let flat_shared = shared.split_whitespace().collect::<Vec<_>>().join(" ");
        for needle in [
            "common.garageTestCluster {",
            "when machine.a.garage [ (cluster storageA) ]",
            "when machine.b.garage [ (cluster storageB) ]",
            "when (storageB != null) [ objectStorageB ]",
            "fediversity.s3.endpoint = lib.mkForce \"https://${storageB.s3_host}\";",
        ] {
            assert!(
                flat_shared.contains(needle),
                "lib/migration.nix lacks {needle}"
            );
        }
        // Per-side names: A's nodes never resolve B's storage; B's resolve both S3 hosts.
        let names = |side: &str| -> Vec<String> {
            data[side]
                .as_object()
                .unwrap_or_else(|| panic!("{file}: no {side}"))
                .values()
                .flat_map(|v| {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|n| n.as_str().unwrap().to_owned())
                })
                .collect()
        };
        assert!(
            !names("hosts_a").contains(&s3_b),
            "{file}: A's nodes resolve A's names only"
        );
        assert!(
            names("hosts_b").contains(&s3_a) && names("hosts_b").contains(&s3_b),
            "{file}: B's nodes resolve B's S3 host and A's"
        );
        let run = script
            .find("fedigen migrate run")
            .unwrap_or_else(|| panic!("{file}: no migrate run"));
        for app in &stored {
            let manifest = &catalog.manifests[*app];
            let machine = operator.machine_name(app);
            let host = operator.host_name(app, manifest);
            assert!(
                script.contains(&format!("switch_dns(client, \"{host}\"")),
                "{file}: the client follows the DNS switch of {host}"
            );
            for step in &manifest.test.object_storage {
                let bucket = storage_bucket(operator, app, &manifest.needs.s3_buckets, &step.kind);
                // Before the run: the media is in A's bucket, read from A's Garage.
                let at_a = stored_objects_at(
                    script,
                    &format!("https://media.{}/{bucket}/", spec.provider.domain),
                )
                .unwrap_or_else(|| panic!("{file}: {app}'s media is not shown in A's bucket"));
                assert!(
                    at_a < run,
                    "{file}: {app}'s media is shown at A before the move"
                );
                assert!(
                    script[at_a..run].contains(&format!("held_sha256({garage_a},")),
                    "{file}: {app}'s media is read from A's Garage"
                );
                // The job (B's node's /etc/fedigen/migrate.json) moves the bucket from A's endpoint to B's.
                let job = &data["machines"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["b"]["name"] == format!("{machine}-b"))
                    .unwrap_or_else(|| panic!("{file}: {machine}-b"))["job"];
                let moved = job["buckets"].as_array().unwrap().iter().any(|b| {
                    b["source"]["bucket"] == *bucket
                        && b["source"]["endpoint"] == format!("https://{s3_a}")
                        && b["source"]["key_file"]
                            == format!("/run/secrets/fedigen-migrate/{bucket}-source.env")
                        && b["target"]["bucket"] == *bucket
                        && b["target"]["endpoint"] == format!("https://{s3_b}")
                        && b["target"]["key_file"]
                            == format!("/run/secrets/fedigen-migrate/{bucket}-target.env")
                });
                assert!(
                    moved,
                    "{file}: {machine}'s job does not move {bucket}: {job}"
                );
                proven += 1;
                // Every database moves (MySQL's too), so the media reads back at B from B's media host.
                let at_b = stored_objects_at(script, &format!("https://{media_b}/{bucket}/"))
                    .unwrap_or_else(|| panic!("{file}: {app}'s media is not read back at B"));
                assert!(at_b > run, "{file}");
            }
        }
        let after = &script[run..];
        assert!(
            after.contains(&format!("held_sha256({garage_b}, "))
                && after.contains("assert held_at_b == held"),
            "{file}: after the move, B's Garage holds the bytes A's held"
        );
    }
    assert!(
        proven >= 3,
        "Mastodon, Pixelfed and PeerTube media move ({proven})"
    );
}

/// Issue #16: after a move, the instance must be the same to the rest of the Fediverse (the same actor keys, the
/// same server signing keys). Every migration test reads each of the manifest's `[[test.identity]]` commands at A
/// before the run and at B after it, and asserts them equal (every database moves, Pixelfed's MySQL too).
#[test]
fn every_migration_test_compares_what_other_servers_know_each_instance_by() {
    let (_, checked) = all();
    let repo = repository();
    let (spec, catalog) =
        fedigen::deploy::load_spec(&repo, &repo.join("examples/provider.toml")).unwrap();
    let mut compared = Vec::new();
    for operator in &spec.operators {
        let file = format!("migrate-{}.nix", operator.name);
        let Some(checked) = checked.get(&file) else {
            continue;
        };
        let script = &checked.trace;
        for (app, application) in &operator.applications {
            let manifest = &catalog.manifests[app];
            if !application.enable {
                continue;
            }
            let host = operator.host_name(app, manifest);
            let b = pythonize(&format!("{}-b", operator.machine_name(app)));
            let run = script
                .find(&format!("{b}.succeed(\"fedigen migrate run"))
                .unwrap_or_else(|| panic!("{file}: {b} runs no migration"));
            for step in &manifest.test.identity {
                let on = match step.on {
                    fedigen::manifest::test_plan::StepNode::Client => "client".to_owned(),
                    fedigen::manifest::test_plan::StepNode::Server => b.clone(),
                };
                let command =
                    serde_json::to_string(&step_command(&[("FEDIGEN_HOST", &host)], &step.run))
                        .unwrap();
                let at_a = script
                    .find(&format!(".succeed({command})"))
                    .unwrap_or_else(|| {
                        panic!("{file}: {app}'s {:?} is not read at A", step.description)
                    });
                assert!(
                    at_a < run,
                    "{file}: {app}'s identity is read at A before the move"
                );
                let at_b = run
                    + script[run..]
                        .find(&format!("{on}.wait_until_succeeds({command})"))
                        .unwrap_or_else(|| {
                            panic!(
                                "{file}: {app}'s {:?} is not read at B after the move",
                                step.description
                            )
                        });
                let compare = &script[at_b..];
                let compare = &compare[..compare.find("with subtest").unwrap_or(compare.len())];
                assert!(
                    compare.contains("assert at_b == at_a"),
                    "{file}: {app}'s identity at B is compared with A's"
                );
                compared.push(format!("{file} {app}"));
            }
        }
    }
    assert!(
        compared.len() >= 5,
        "Mastodon (twice), Pixelfed, PeerTube and Synapse compare their identity: {compared:?}"
    );
}

/// Issue #16: a follower on a third instance still sees new posts after the move. Every migration test of an
/// operator whose application has `[[test.federation.moved]]` steps has the peer node `<machine>-peer` (under the
/// federation test's second domain), which A's and B's nodes resolve and which resolves the application's host;
/// it runs the federation steps (A's node as the first instance, the peer as the second) after the seed and before
/// `fedigen migrate run`, switches the peer's DNS to B after the run, and runs the moved steps (B's node first)
/// after that switch. Fails on a tree whose migration tests have no peer.
#[test]
fn every_migration_test_with_moved_federation_steps_has_a_peer_that_hears_from_b() {
    let (scripts, checked) = all();
    let repo = repository();
    let (spec, catalog) =
        fedigen::deploy::load_spec(&repo, &repo.join("examples/provider.toml")).unwrap();
    let mut proven = Vec::new();
    for operator in &spec.operators {
        let file = format!("migrate-{}.nix", operator.name);
        for (app, _) in operator.applications.iter().filter(|(_, a)| a.enable) {
            let manifest = &catalog.manifests[app];
            let Some(federation) = manifest
                .test
                .federation
                .as_ref()
                .filter(|f| !f.moved.is_empty())
            else {
                continue;
            };
            let script = &scripts[&file];
            assert!(
                checked[&file].problems.is_empty(),
                "{file}: {:?}",
                checked[&file].problems
            );
            let machine = operator.machine_name(app);
            let [a, b, peer] =
                ["a", "b", "peer"].map(|side| pythonize(&format!("{machine}-{side}")));
            assert!(
                script.machines.contains(&peer),
                "{file}: no peer node for {machine}: {:?}",
                script.machines
            );
            let host = operator.host_name(app, manifest);
            // The federation test's second instance's host (`<subdomain>.second.test`).
            let peer_host = format!("{}.second.test", manifest.application.subdomain);
            let data = test_data(&repo, &file);
            let resolves = |side: &str, name: &str| {
                data[side]
                    .as_object()
                    .unwrap_or_else(|| panic!("{file}: no {side}"))
                    .values()
                    .any(|names| names.as_array().unwrap().iter().any(|n| n == name))
            };
            for side in ["hosts_a", "hosts_b"] {
                assert!(
                    resolves(side, &peer_host),
                    "{file}: {side} lacks the peer's host {peer_host}"
                );
            }
            assert!(
                resolves("hosts_peer", &peer_host) && resolves("hosts_peer", &host),
                "{file}: the peer resolves itself and {host}"
            );
            let text = &checked[&file].trace;
            let run = text
                .find(&format!("{b}.succeed(\"fedigen migrate run"))
                .unwrap_or_else(|| panic!("{file}: {b} runs no migration"));
            let seeded = text
                .find(&format!("with subtest(\"seed {machine} at A\")"))
                .unwrap_or_else(|| panic!("{file}: {machine} is not seeded"));
            let switched = text
                .find(&format!("switch_dns({peer}, \"{host}\", "))
                .unwrap_or_else(|| {
                    panic!("{file}: the peer does not follow the DNS switch of {host}")
                });
            assert!(
                switched > run,
                "{file}: the peer's DNS switches after the run"
            );
            // Each list in order, each step on its node with both hosts, in its window.
            let in_order = |steps: &[fedigen::manifest::test_plan::FederationStep],
                            first: &str,
                            mut at: usize,
                            before: usize| {
                for step in steps {
                    let (node, own, other) = match step.on {
                        fedigen::manifest::test_plan::Instance::First => (first, &host, &peer_host),
                        fedigen::manifest::test_plan::Instance::Second => {
                            (peer.as_str(), &peer_host, &host)
                        }
                    };
                    let method = if step.wait {
                        "wait_until_succeeds"
                    } else {
                        "succeed"
                    };
                    let command = serde_json::to_string(&fedigen::template::until_expected(
                        step_command(&[("FEDIGEN_HOST", own), ("FEDIGEN_PEER", other)], &step.run),
                        step.wait,
                        step.expect.as_deref(),
                    ))
                    .unwrap();
                    at += text[at..]
                        .find(&format!("{node}.{method}({command})"))
                        .unwrap_or_else(|| {
                            panic!(
                                "{file}: {:?} on {node} is not in its place",
                                step.description
                            )
                        });
                    assert!(at < before, "{file}: {:?} runs too late", step.description);
                }
            };
            in_order(&federation.steps, &a, seeded, run);
            in_order(&federation.moved, &b, switched, text.len());
            proven.push(format!("{file} {app}"));
        }
    }
    assert!(
        !proven.is_empty(),
        "Matrix's migration test has a peer: {proven:?}"
    );
}

/// A deployment or migration test's data: the JSON beside `file` (`deployment-<operator>.nix`,
/// `migrate-<operator>.nix`) that the shared test is called with.
fn test_data(repo: &Path, file: &str) -> Value {
    let data = repo
        .join("vm-tests/generated")
        .join(file.replace(".nix", ".json"));
    serde_json::from_str(&std::fs::read_to_string(&data).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", data.display()))
}

/// The bucket name rule of `deploy::storage::bucket_name`, restated: the specification's override, else
/// `<operator>-<app>` for one kind, `<operator>-<app>-<kind>` for several.
fn storage_bucket(
    operator: &fedigen::model::Operator,
    app: &str,
    kinds: &[String],
    kind: &str,
) -> String {
    operator
        .applications
        .get(app)
        .and_then(|a| a.buckets.get(kind))
        .cloned()
        .unwrap_or_else(|| {
            if kinds.len() == 1 {
                format!("{}-{app}", operator.name)
            } else {
                format!("{}-{app}-{}", operator.name, kind.replace('_', "-"))
            }
        })
}

/// The shared migration test (`lib/migration.nix`) builds each operator's nodes from the operator's data: evaluated
/// by Nix with `lib/common.nix`'s node builders standing in (each returns the arguments it was given) and `lib`'s
/// option wrappers recorded, every machine's A and B nodes get the data's module, host, resources, secrets,
/// packages and hosts of their side, the application's settings and the `side` module; B's node also the job as
/// `/etc/fedigen/migrate.json` and B's object storage; a peer is built from its data; each side's Garage-only
/// node and the client are there. The scripts are checked above; this is the other half of the function.
#[test]
fn every_migration_test_builds_its_nodes_from_its_data() {
    let repo = repository();
    let (dir, files, all) = shared_test_nodes("migrate-", "migration.nix");
    let root = format!("path:{}/", dir.path().display());
    for file in &files {
        let data = test_data(&repo, file);
        let nodes = &all[file];
        let mut expected = vec!["client".to_owned()];
        for machine in data["machines"].as_array().unwrap() {
            for (side, hosts) in [("a", "hosts_a"), ("b", "hosts_b")] {
                let want = &machine[side];
                let name = want["name"].as_str().unwrap();
                expected.push(name.to_owned());
                let imports = node_imports(nodes, want, &root, file);
                let made = &imports[0]["testNode"];
                assert_eq!(
                    made["hosts"], data[hosts],
                    "{file}: {name} resolves its side's names"
                );
                // Named by its node name, whatever host name its module sets (drivers before NixOS 26.05 named
                // machines by config.system.name; review-35).
                assert_eq!(
                    imports[1]["system"]["name"], want["name"],
                    "{file}: {name} is named by its node name"
                );
                let application = machine["application"].as_str().unwrap();
                assert_eq!(
                    imports[2]["fediversity"][application], want["settings"],
                    "{file}: {name}'s settings"
                );
                assert!(
                    imports
                        .iter()
                        .any(|i| i["module"]["imports"] == serde_json::json!(["databaseTls"])),
                    "{file}: {name} imports `side`"
                );
                let uses_b_storage = imports.iter().any(|i| {
                    i["fediversity"]["s3"]["endpoint"]["mkForce"]
                        == format!(
                            "https://{}",
                            data["storage_b"]["s3_host"].as_str().unwrap_or("-")
                        )
                });
                assert_eq!(
                    uses_b_storage,
                    side == "b" && !data["storage_b"].is_null(),
                    "{file}: only B's nodes use B's object storage ({name})"
                );
            }
            let b = machine["b"]["name"].as_str().unwrap();
            let job: Value = serde_json::from_str(
                nodes[b]["environment"]["etc"]["fedigen/migrate.json"]["text"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: {b} has no job")),
            )
            .unwrap();
            assert_eq!(job, machine["job"], "{file}: {b}'s job is the data's");
            if let Some(peer) = machine["peer"].as_object() {
                let name = peer["instance"]["name"].as_str().unwrap();
                expected.push(name.to_owned());
                let made = &nodes[name]["testInstance"];
                assert_eq!(made["host"], peer["instance"]["host"], "{file}: {name}");
                assert_eq!(made["hosts"], data["hosts_peer"], "{file}: {name}");
                assert_eq!(made["secretFiles"], peer["secret_files"], "{file}: {name}");
            }
        }
        for storage in ["storage_a", "storage_b"] {
            if let Some(extra) = data[storage]["extra"].as_object() {
                let name = extra["name"].as_str().unwrap();
                expected.push(name.to_owned());
                let made = &nodes[name]["imports"][0]["testNode"];
                assert_eq!(made["secrets"], data[storage]["secrets"], "{file}: {name}");
                assert_eq!(made["host"], data[storage]["s3_host"], "{file}: {name}");
            }
        }
        expected.sort();
        let mut made: Vec<String> = nodes.as_object().unwrap().keys().cloned().collect();
        made.sort();
        assert_eq!(made, expected, "{file}: the nodes are the data's");
        assert_eq!(
            nodes["client"]["imports"][0]["testNetwork"], data["hosts_client"],
            "{file}: the client resolves A's names"
        );
    }
}

/// Evaluates the nodes of every generated test whose file name starts with `prefix` (a call of the shared test
/// `lib/<shared>`), with `lib/common.nix`'s node builders standing in (each returns the arguments it was given)
/// and `lib`'s option wrappers recorded: the copy they were evaluated in (module paths lie under it), the test
/// files, and the nodes by file, functions (`side`) applied to a configuration with both database servers.
fn shared_test_nodes(prefix: &str, shared: &str) -> (tempfile::TempDir, Vec<String>, Value) {
    let repo = repository();
    let generated = repo.join("vm-tests/generated");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("vm-tests/generated");
    std::fs::create_dir_all(copy.join("lib")).unwrap();
    std::fs::copy(
        generated.join("lib").join(shared),
        copy.join("lib").join(shared),
    )
    .unwrap();
    // The real helpers (the script's `lines`, `when`, …) under the stand-ins for the node builders.
    std::fs::copy(
        generated.join("lib/common.nix"),
        copy.join("lib/real-common.nix"),
    )
    .unwrap();
    std::fs::write(
        copy.join("lib/common.nix"),
        "{ pkgs }: import ./real-common.nix { inherit pkgs; } // {\n  testNode = a: { testNode = a; };\n  garageTestCluster = a: { garageTestCluster = a; };\n  \
         garageOnlyNode = a: { garageOnlyNode = a; };\n  testInstance = a: { testInstance = a; };\n  \
         testNetwork = a: { testNetwork = a; };\n  testPackages = a: { testPackages = a; };\n  \
         databaseTls = \"databaseTls\";\n  pythonHelpers = \"\";\n}\n",
    )
    .unwrap();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&generated).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            std::fs::copy(entry.path(), copy.join(&name)).unwrap();
            if name.ends_with(".nix") {
                files.push(name);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let entries: String = files
        .iter()
        .map(|f| format!("{f:?} = nodes ./{f};\n"))
        .collect();
    let expression = format!(
        r#"
let
  lib = {{
    mkForce = v: {{ mkForce = v; }};
    mkIf = c: v: {{ mkIf = [ c v ]; }};
    mkOverride = p: v: {{ mkOverride = [ p v ]; }};
    optional = c: v: if c then [ v ] else [ ];
    optionalAttrs = c: v: if c then v else {{ }};
  }};
  pkgs = {{
    inherit lib;
    testers.runNixOSTest = test: test;
    runCommand = name: attrs: script: "/nix/store/stand-in-${{name}}";
    openssh = "openssh"; rsync = "rsync"; rclone = "rclone";
  }};
  config = {{
    services.postgresql = {{ enable = true; package = "postgresql"; }};
    services.mysql = {{ enable = true; package = "mysql"; }};
  }};
  norm = v:
    if builtins.isAttrs v then builtins.mapAttrs (_: norm) v
    else if builtins.isList v then map norm v
    else if builtins.isPath v then "path:" + toString v
    else if builtins.isFunction v then {{ module = norm (v {{ inherit config; }}); }}
    else v;
  nodes = file: norm (import file ({{ inherit pkgs; }} // (if {prefix:?} == "migrate-" then {{ fedigen = "fedigen"; }} else {{ }}))).nodes;
in {{
{entries}}}
"#
    );
    let out = nix_command("nix-instantiate")
        .current_dir(&copy)
        .args(["--eval", "--strict", "--json", "--expr", &expression])
        .output()
        .expect("nix-instantiate runs (install nix-bin)");
    assert!(
        out.status.success(),
        "evaluating the migration tests' nodes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    (dir, files, all)
}

/// The shared deployment test (`lib/deployment.nix`) builds each operator's nodes from the operator's data:
/// every machine gets its module, host, resources, secrets, packages, every host name of the test, the
/// application's settings, and, when the data has an upgrade, one specialisation, `fedigen-upgrade`, forcing the
/// data's setting to the data's value (no other: a child evaluated with the machine is no second evaluation); the
/// Garage-only node and the client are there. The scripts are checked above.
#[test]
fn every_deployment_test_builds_its_nodes_from_its_data() {
    let repo = repository();
    let (dir, files, all) = shared_test_nodes("deployment-", "deployment.nix");
    let root = format!("path:{}/", dir.path().display());
    for file in &files {
        let data = test_data(&repo, file);
        let nodes = &all[file];
        let mut expected = vec!["client".to_owned()];
        for want in data["nodes"].as_array().unwrap() {
            let name = want["name"].as_str().unwrap();
            expected.push(name.to_owned());
            let imports = node_imports(nodes, want, &root, file);
            let made = &imports[0]["testNode"];
            assert_eq!(made["hosts"], data["hosts"], "{file}: {name}");
            let application = want["application"].as_str().unwrap();
            assert_eq!(
                imports[1]["fediversity"][application], want["settings"],
                "{file}: {name}'s settings"
            );
            let specialisations: Vec<&serde_json::Map<String, Value>> = imports
                .iter()
                .filter_map(|i| i["specialisation"].as_object())
                .collect();
            match want["upgrade"].as_object() {
                Some(upgrade) => {
                    let setting = upgrade["setting"].as_str().unwrap();
                    assert_eq!(specialisations.len(), 1, "{file}: {name}'s specialisations");
                    let children: Vec<&String> = specialisations[0].keys().collect();
                    assert_eq!(
                        children,
                        ["fedigen-upgrade"],
                        "{file}: {name}'s specialisations"
                    );
                    assert_eq!(
                        specialisations[0]["fedigen-upgrade"]["configuration"]["fediversity"]
                            [application][setting]["mkForce"],
                        upgrade["value"],
                        "{file}: {name}'s upgrade forces {setting}"
                    );
                }
                None => assert!(
                    specialisations.is_empty(),
                    "{file}: {name} has no upgrade, and no specialisation: {specialisations:?}"
                ),
            }
        }
        if let Some(extra) = data["storage"]["extra"].as_object() {
            let name = extra["name"].as_str().unwrap();
            expected.push(name.to_owned());
            assert_eq!(
                nodes[name]["imports"][0]["testNode"]["secrets"], data["storage"]["secrets"],
                "{file}: {name}"
            );
        }
        expected.sort();
        let mut made: Vec<String> = nodes.as_object().unwrap().keys().cloned().collect();
        made.sort();
        assert_eq!(made, expected, "{file}: the nodes are the data's");
    }
}

/// The imports of the node the shared test made of the data's node `want`, its first a generated machine's test
/// node whose arguments are the data's: the module (under the evaluated copy `root`), host, resources, secrets,
/// packages and virtual host.
fn node_imports<'a>(nodes: &'a Value, want: &Value, root: &str, file: &str) -> &'a Vec<Value> {
    let name = want["name"].as_str().unwrap();
    let imports = nodes[name]["imports"]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: no node {name}"));
    let made = &imports[0]["testNode"];
    let module = want["module"].as_str().unwrap().replace("../../", "");
    assert_eq!(made["module"], format!("{root}{module}"), "{file}: {name}");
    for (arg, field) in [
        ("host", "host"),
        ("https", "https"),
        ("cores", "cores"),
        ("memory", "memory_mib"),
        ("secrets", "secrets"),
        ("packages", "packages"),
        ("virtualHost", "virtual_host"),
    ] {
        assert_eq!(made[arg], want[field], "{file}: {name}'s {arg}");
    }
    imports
}

/// The test CA's certificates (`ca`, `certificateFor` of `lib/common.nix`) are built the same on every build: the
/// builders the generated file holds, run as a build runs them (their environment, `$out`, a fresh working
/// directory) with the system's OpenSSL, twice, seconds apart, give the same bytes; and what they give is what
/// TLS clients accept: a chain that verifies under OpenSSL's strict checks (`-x509_strict`: what Python 3.13's
/// default context asks for), the host names as subjectAltNames, the key the certificate is for. A builder that
/// made a key or read the clock would fail the first check, which is how the harness's `rebuild` would see it.
#[test]
fn test_certificates_are_the_same_bytes_on_every_build() {
    let expression = format!(
        r#"
let
  pkgs = {{
    lib = {{
      concatMapStringsSep = sep: f: list: builtins.concatStringsSep sep (map f list);
      escapeShellArg = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] s + "'";
    }};
    openssl = "openssl";
    runCommand = name: env: script: env // {{ inherit name script; outPath = "@out@/${{name}}"; }};
  }};
  common = import {}/vm-tests/generated/lib/common.nix {{ inherit pkgs; }};
  builder = d: {{ inherit (d) name script; env = removeAttrs d [ "name" "script" "outPath" "nativeBuildInputs" ]; }};
in
[ (builder common.ca) (builder (common.certificateFor [ "social.example" "media.example" ])) ]
"#,
        repository().display()
    );
    let builders: Vec<Value> = evaluate_json(&expression);
    let build = |root: &Path| {
        for builder in &builders {
            let name = builder["name"].as_str().unwrap();
            let work = root.join(format!("work-{name}"));
            std::fs::create_dir_all(&work).unwrap();
            let script = builder["script"]
                .as_str()
                .unwrap()
                .replace("@out@", &root.display().to_string());
            let mut command = std::process::Command::new("bash");
            command
                .args(["-e", "-c", &script])
                .current_dir(&work)
                .env("out", root.join(name));
            for (key, value) in builder["env"].as_object().unwrap() {
                command.env(key, value.as_str().unwrap());
            }
            let run = command
                .output()
                .expect("bash and openssl (scripts/install-test-deps installs openssl)");
            assert!(
                run.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&run.stderr)
            );
        }
    };
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    build(first.path());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    build(second.path());
    let host = "fedigen-test-certificate-social.example";
    for file in [
        "fedigen-test-ca/cert.pem",
        "fedigen-test-ca/key.pem",
        &format!("{host}/cert.pem"),
        &format!("{host}/key.pem"),
    ] {
        let read = |root: &Path| std::fs::read(root.join(file)).unwrap();
        assert_eq!(
            read(first.path()),
            read(second.path()),
            "{file} differs between two builds"
        );
    }
    let openssl = |args: &[&str]| -> String {
        let run = std::process::Command::new("openssl")
            .args(args)
            .current_dir(first.path())
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "openssl {args:?}: {}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        String::from_utf8_lossy(&run.stdout).into_owned()
    };
    let cert = format!("{host}/cert.pem");
    openssl(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        "fedigen-test-ca/cert.pem",
        &cert,
    ]);
    let names = openssl(&["x509", "-in", &cert, "-noout", "-ext", "subjectAltName"]);
    assert!(
        names.contains("DNS:social.example, DNS:media.example"),
        "{names}"
    );
    assert_eq!(
        openssl(&["x509", "-in", &cert, "-noout", "-pubkey"]),
        openssl(&["pkey", "-in", &format!("{host}/key.pem"), "-pubout"]),
        "the certificate is for the key beside it"
    );
}

/// `placeFile` of `lib/common.nix` (how a test places its secret files, on every activation) writes a file when
/// it is missing or differs in content, owner, group or mode, and otherwise leaves it alone, so a second
/// activation fires no path unit watching it: run with bash on real files, twice, then after a change of mode and
/// of content, the file's inode showing whether it was written.
#[test]
fn test_secrets_are_written_only_when_they_differ() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    std::fs::write(&source, "first secret\n").unwrap();
    let target = dir.path().join("secrets/dir/key");
    let id = |flag: &str| -> String {
        let out = std::process::Command::new("id").arg(flag).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let (owner, group) = (id("-un"), id("-gn"));
    let expression = format!(
        r#"
let
  pkgs = {{
    lib = {{
      escapeShellArg = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] s + "'";
      removePrefix = p: s: if builtins.substring 0 (builtins.stringLength p) s == p then builtins.substring (builtins.stringLength p) (-1) s else s;
    }};
    diffutils = "/usr";
  }};
  common = import {}/vm-tests/generated/lib/common.nix {{ inherit pkgs; }};
in
common.placeFile {{ source = {:?}; path = {:?}; owner = {owner:?}; group = {group:?}; mode = "0400"; }}
"#,
        repository().display(),
        source.display().to_string(),
        target.display().to_string(),
    );
    let script: String = evaluate_json(&expression);
    let place = || {
        let run = std::process::Command::new("bash")
            .args(["-e", "-c", &script])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{script}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
    };
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let inode = || std::fs::metadata(&target).unwrap().ino();
    place();
    assert_eq!(std::fs::read(&target).unwrap(), b"first secret\n");
    assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o7777, 0o400);
    let first = inode();
    place();
    assert_eq!(inode(), first, "placed again though nothing differs");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    place();
    assert_ne!(inode(), first, "a wrong mode is not put right");
    assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o7777, 0o400);
    let second = inode();
    std::fs::write(&source, "second secret\n").unwrap();
    place();
    assert_ne!(inode(), second, "a changed secret is not placed");
    assert_eq!(std::fs::read(&target).unwrap(), b"second secret\n");
    assert!(
        !dir.path().join("secrets/dir/key.fedigen-new").exists(),
        "the temporary file is left"
    );
}

/// A machine hosting the test's Garage node gets its node key from `testNodeKey` alone: its own placeholder for that
/// file is not among the secrets `testSecrets` places, or every activation would write the placeholder and then
/// the key (for a moment the file would hold the placeholder, which Garage would take for its identity).
#[test]
fn the_garage_node_key_is_placed_once() {
    let generated = repository().join("vm-tests/generated");
    let mut hosting = 0;
    for entry in std::fs::read_dir(&generated).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let data: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let key_paths: Vec<&str> = ["storage", "storage_a", "storage_b"]
            .iter()
            .filter_map(|s| data[s]["node_key_path"].as_str())
            .collect();
        let mut nodes: Vec<&Value> = data["nodes"].as_array().into_iter().flatten().collect();
        for machine in data["machines"].as_array().into_iter().flatten() {
            nodes.extend([&machine["a"], &machine["b"]]);
        }
        for node in nodes.into_iter().filter(|n| n["garage"] == true) {
            hosting += 1;
            for secret in node["secrets"].as_array().unwrap() {
                assert!(
                    !key_paths.contains(&secret["path"].as_str().unwrap()),
                    "{}: {} places its node key placeholder besides testNodeKey",
                    path.display(),
                    node["name"]
                );
            }
        }
    }
    assert!(hosting > 0, "no machine of the example hosts a Garage node");
}

/// The value of a Nix expression (`nix-instantiate --eval --strict --json`), read as `T`; the evaluation must succeed.
fn evaluate_json<T: serde::de::DeserializeOwned>(expression: &str) -> T {
    let out = nix_command("nix-instantiate")
        .args(["--eval", "--strict", "--json", "--expr", expression])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
