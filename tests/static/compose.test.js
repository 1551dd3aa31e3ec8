'use strict';
// compose.yaml and the Dockerfile, read as text: every container runs a binary
// the build makes (or Redis) from the image of this repository's Dockerfile,
// can be scaled, finds the broker, and keeps its data and keys in declared
// volumes; the image has every binary and every shared library they need.
// Runs after `make all` (scripts/test.sh sets PARTA_ROOT and PARTA_BIN).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const yaml = require('js-yaml');

const root = process.env.PARTA_ROOT || path.resolve(__dirname, '..', '..');
const read = (name) => fs.readFileSync(path.join(root, name), 'utf8');

// --- what the repository says ---

// The Makefile's SERVICES list names parta-<service>; the gateway is separate.
function builtBinaries() {
    const m = read('Makefile').match(/^SERVICES\s*[:?]?=\s*(.*)$/m);
    assert.ok(m, 'Makefile has no SERVICES = ... line');
    const names = m[1].trim().split(/\s+/).filter(Boolean);
    assert.ok(names.includes('broker'), 'SERVICES has no broker');
    return new Set([...names.map((n) => `parta-${n}`), 'parta-gateway']);
}

// A bash array `name=( ... )` in scripts/deps.sh.
function depsArray(name) {
    const m = read('scripts/deps.sh').match(new RegExp(`^${name}=\\(([^)]*)\\)`, 'm'));
    assert.ok(m, `scripts/deps.sh has no ${name}=( ... )`);
    return m[1].split(/\s+/).filter((w) => w && !w.startsWith('#'));
}

// Dockerfile instructions with continuation lines joined, comments dropped,
// split into stages at each FROM.
function dockerStages() {
    const lines = read('Dockerfile').split('\n').filter((l) => !/^\s*#/.test(l));
    const instructions = lines.join('\n').replace(/\\\n/g, ' ').split('\n')
        .map((l) => l.trim()).filter(Boolean);
    const stages = [];
    for (const ins of instructions) {
        if (/^FROM\s/i.test(ins)) stages.push({ from: ins, instructions: [] });
        else if (stages.length) stages[stages.length - 1].instructions.push(ins);
    }
    return stages;
}

// Packages a stage installs with apt-get install.
function aptInstalls(stage) {
    const pkgs = new Set();
    for (const ins of stage.instructions) {
        if (!/^RUN\s/i.test(ins)) continue;
        for (const cmd of ins.split(/&&|;/)) {
            const words = cmd.trim().split(/\s+/);
            const at = words.indexOf('install');
            if (!words.includes('apt-get') || at < 0) continue;
            words.slice(at + 1).filter((w) => !w.startsWith('-')).forEach((w) => pkgs.add(w));
        }
    }
    return pkgs;
}

// Files a stage's COPY instructions put into /usr/local/bin.
function copiedToBin(stage) {
    const names = new Set();
    for (const ins of stage.instructions) {
        if (!/^COPY\s/i.test(ins)) continue;
        const words = ins.split(/\s+/).slice(1).filter((w) => !w.startsWith('--'));
        const dest = words.pop();
        if (!/^\/usr\/local\/bin\/?$/.test(dest)) continue;
        words.forEach((w) => names.add(path.basename(w)));
    }
    return names;
}

// --- what compose.yaml says ---

const compose = () => yaml.load(read('compose.yaml'));
const services = () => Object.entries(compose().services);

// Compose's ${VAR:-default} / ${VAR-default}, as the defaults would have it.
const interpolate = (s) => String(s).replace(/\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}/g,
    (_, name, def) => (process.env[name] !== undefined ? process.env[name] : def || ''));

function commandWords(svc) {
    if (Array.isArray(svc.command)) return svc.command.map(String);
    if (typeof svc.command === 'string') return svc.command.trim().split(/\s+/);
    return [];
}

function environment(svc) {
    const env = {};
    if (Array.isArray(svc.environment)) {
        for (const item of svc.environment) {
            const eq = String(item).indexOf('=');
            if (eq > 0) env[item.slice(0, eq)] = interpolate(item.slice(eq + 1));
        }
    } else if (svc.environment) {
        for (const [k, v] of Object.entries(svc.environment))
            env[k] = v === null ? '' : interpolate(v);
    }
    return env;
}

// [{source, target}] for short ("data:/var/lib/parta:ro") and long syntax.
function mounts(svc) {
    return (svc.volumes || []).map((v) => {
        if (typeof v === 'string') {
            const [source, target] = v.split(':');
            return target === undefined ? { source: null, target: source } : { source, target };
        }
        return { source: v.source || null, target: v.target, type: v.type };
    });
}

const dependsOn = (svc) => (Array.isArray(svc.depends_on) ? svc.depends_on
    : Object.keys(svc.depends_on || {}));

const isParta = (svc) => /^parta-/.test(commandWords(svc)[0] || '');
const isKeygen = (svc) => commandWords(svc).includes('--keygen');
const isBroker = (svc) => commandWords(svc)[0] === 'parta-broker' && !isKeygen(svc);

// --- the tests ---

test('compose.yaml parses and has services', () => {
    const doc = compose();
    assert.equal(typeof doc, 'object');
    assert.ok(doc.services && Object.keys(doc.services).length > 0, 'no services');
});

test('every service runs a binary the build makes, or redis-server', () => {
    const binaries = builtBinaries();
    for (const [name, svc] of services()) {
        const cmd = commandWords(svc)[0];
        assert.ok(cmd, `${name}: no command`);
        if (cmd === 'redis-server') continue;
        assert.ok(binaries.has(cmd), `${name}: ${cmd} is not built by the Makefile (${[...binaries].join(' ')})`);
    }
    const running = new Set(services().map(([, s]) => commandWords(s)[0]));
    for (const bin of binaries)
        assert.ok(running.has(bin), `no service runs ${bin}`);
});

test('every service uses the one image built from the Dockerfile', () => {
    const images = new Set();
    for (const [name, svc] of services()) {
        assert.ok(svc.build, `${name}: no build section`);
        const build = typeof svc.build === 'string' ? { context: svc.build } : svc.build;
        assert.equal(path.resolve(root, build.context || '.'), path.resolve(root),
            `${name}: build context is not the repository root`);
        assert.equal(build.dockerfile || 'Dockerfile', 'Dockerfile', `${name}: not the repository's Dockerfile`);
        assert.ok(svc.image, `${name}: the built image has no name`);
        images.add(svc.image);
    }
    assert.equal(images.size, 1, `services name different images: ${[...images].join(' ')}`);
});

test('services can be scaled: no container_name, only the gateway publishes ports', () => {
    for (const [name, svc] of services()) {
        assert.equal(svc.container_name, undefined, `${name}: container_name prevents --scale`);
        if (commandWords(svc)[0] === 'parta-gateway') continue;
        assert.ok(!svc.ports || svc.ports.length === 0, `${name}: publishes ports`);
    }
});

test('the gateway listens on 0.0.0.0 on the port it publishes, and finds Redis', () => {
    const gateways = services().filter(([, s]) => commandWords(s)[0] === 'parta-gateway');
    assert.equal(gateways.length, 1, 'exactly one gateway service');
    const [name, gw] = gateways[0];
    const env = environment(gw);
    const m = /^0\.0\.0\.0:(\d+)$/.exec(env.PARTA_HTTP || '');
    assert.ok(m, `${name}: PARTA_HTTP=${env.PARTA_HTTP} does not listen on 0.0.0.0`);
    const targets = (gw.ports || []).map((p) => (typeof p === 'object' ? String(p.target)
        : interpolate(p).split(':').pop().split('/')[0]));
    assert.ok(targets.includes(m[1]), `${name}: port ${m[1]} is not published (${targets.join(' ')})`);

    const redis = services().filter(([, s]) => commandWords(s)[0] === 'redis-server');
    assert.equal(redis.length, 1, 'exactly one redis service');
    const [redisName, redisSvc] = redis[0];
    const words = commandWords(redisSvc);
    const portAt = words.indexOf('--port');
    const port = portAt >= 0 ? words[portAt + 1] : '6379';
    assert.equal(env.PARTA_REDIS, `redis://${redisName}:${port}`, `${name}: PARTA_REDIS does not point at ${redisName}`);
    assert.ok(dependsOn(gw).includes(redisName), `${name}: does not depend on ${redisName}`);
});

test('the broker binds what every other Parta process connects to', () => {
    const brokers = services().filter(([, s]) => isBroker(s));
    assert.equal(brokers.length, 1, 'exactly one broker service');
    const [brokerName, broker] = brokers[0];
    const benv = environment(broker);
    for (const [name, svc] of services()) {
        if (!isParta(svc) || isKeygen(svc) || name === brokerName) continue;
        const env = environment(svc);
        for (const key of ['PARTA_BUS', 'PARTA_EVENTS_IN', 'PARTA_EVENTS_OUT']) {
            const bind = /^tcp:\/\/\*:(\d+)$/.exec(benv[key] || '');
            assert.ok(bind, `${brokerName}: ${key}=${benv[key]} does not bind tcp://*:PORT`);
            assert.equal(env[key], `tcp://${brokerName}:${bind[1]}`, `${name}: ${key}`);
        }
        assert.ok(dependsOn(svc).includes(brokerName), `${name}: does not depend on ${brokerName}`);
    }
});

test('the bus keys are made once, before anything uses them', () => {
    const keygens = services().filter(([, s]) => isKeygen(s));
    assert.equal(keygens.length, 1, 'exactly one keygen service');
    const [keysName, keys] = keygens[0];
    const words = commandWords(keys);
    const dir = words[words.indexOf('--keygen') + 1];
    assert.ok(mounts(keys).some((m) => m.target === dir && m.source), `${keysName}: ${dir} is not a volume`);
    const volume = mounts(keys).find((m) => m.target === dir).source;
    for (const [name, svc] of services()) {
        if (!isParta(svc) || name === keysName) continue;
        assert.equal(environment(svc).PARTA_CURVE, dir, `${name}: PARTA_CURVE`);
        assert.ok(mounts(svc).some((m) => m.source === volume && m.target === dir),
            `${name}: does not mount ${volume} at ${dir}`);
        const cond = Array.isArray(svc.depends_on) ? undefined : (svc.depends_on || {})[keysName];
        assert.equal(cond && cond.condition, 'service_completed_successfully',
            `${name}: must wait for ${keysName} to complete`);
    }
});

test('mounted volumes are declared, and the data directory is one', () => {
    const doc = compose();
    const declared = new Set(Object.keys(doc.volumes || {}));
    for (const [name, svc] of services()) {
        for (const m of mounts(svc)) {
            if (!m.source || m.type === 'bind' || /^[./~$]/.test(m.source)) continue;
            assert.ok(declared.has(m.source), `${name}: volume ${m.source} is not declared`);
        }
        const data = environment(svc).PARTA_DATA;
        if (data && isParta(svc))
            assert.ok(mounts(svc).some((m) => m.target === data && m.source),
                `${name}: PARTA_DATA=${data} is not on a volume`);
    }
});

test('depends_on names existing services', () => {
    const names = new Set(Object.keys(compose().services));
    for (const [name, svc] of services())
        for (const dep of dependsOn(svc))
            assert.ok(names.has(dep), `${name}: depends on unknown service ${dep}`);
});

test('the Dockerfile builds every binary and installs what runs them', () => {
    const stages = dockerStages();
    assert.ok(stages.length > 0, 'Dockerfile has no FROM');
    for (const s of stages)
        assert.match(s.from, /debian:12|bookworm/, `not Debian 12: ${s.from}`);
    const final = stages[stages.length - 1];
    const installed = copiedToBin(final);
    for (const bin of builtBinaries())
        assert.ok(installed.has(bin), `Dockerfile does not install ${bin} into /usr/local/bin`);
    for (const [name, svc] of services()) {
        const cmd = commandWords(svc)[0];
        if (cmd === 'redis-server')
            assert.ok(aptInstalls(final).has('redis-server'), `${name}: the image has no redis-server`);
        else
            assert.ok(installed.has(cmd), `${name}: the image has no ${cmd}`);
    }
    assert.ok(final.instructions.some((i) => /^USER\s+(?!root\b|0\b)\S+/i.test(i)), 'the image runs as root');
    assert.ok(stages.some((s) => s.instructions.some((i) => /^RUN\s.*\bmake\b.*\ball\b/i.test(i))),
        'the Dockerfile does not run make all');
    const buildInstalls = new Set(stages.flatMap((s) => [...aptInstalls(s)]));
    for (const pkg of depsArray('build_packages'))
        assert.ok(buildInstalls.has(pkg), `the Dockerfile does not install ${pkg} (scripts/deps.sh does)`);
});

// Every shared library a built binary names (ELF NEEDED) must come from a
// package the image's last stage installs; libc6 and libgcc-s1 are in the base.
test('the image has every shared library the binaries need', (t) => {
    const bin = process.env.PARTA_BIN;
    const have = (cmd) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
    if (!bin || !have('readelf') || !have('dpkg')) {
        t.skip('needs PARTA_BIN, readelf and dpkg');
        return;
    }
    const stages = dockerStages();
    const runtime = aptInstalls(stages[stages.length - 1]);
    const base = new Set(['libc6', 'libgcc-s1']);
    const sanitizers = /^lib(asan|ubsan|lsan|tsan)\.so/;
    const needs = new Map();    // binary -> sonames
    const missing = [];
    for (const name of copiedToBin(stages[stages.length - 1])) {
        const file = path.join(bin, name);
        // After `make all` all are there; a partial build checks what it has.
        if (!fs.existsSync(file)) {
            missing.push(name);
            continue;
        }
        const elf = spawnSync('readelf', ['-d', file], { encoding: 'utf8' });
        assert.equal(elf.status, 0, `readelf ${file}: ${elf.stderr}`);
        const sonames = [...elf.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)]
            .map((m) => m[1]);
        assert.ok(sonames.length > 0, `${name}: no NEEDED entries`);
        // A sanitizer build links every library it is given (no --as-needed
        // effect), so it does not say what the image's plain build needs.
        if (sonames.some((so) => sanitizers.test(so))) {
            t.skip(`${bin} is a sanitizer build; the image ships the plain one`);
            return;
        }
        needs.set(name, sonames);
    }
    assert.ok(needs.size > 0, `none of the image's binaries is in ${bin}`);
    if (missing.length) t.diagnostic(`not built, not checked: ${missing.join(' ')}`);
    // "pkg1:arch, pkg2: /path/to/soname" for each file that has one of them.
    const all = [...new Set([...needs.values()].flat())];
    const owners = spawnSync('dpkg', ['-S', ...all.map((so) => `*/${so}`)], { encoding: 'utf8' }).stdout;
    const packagesOf = new Map(all.map((so) => [so, new Set()]));
    for (const line of owners.split('\n')) {
        const sep = line.indexOf(': ');
        if (sep < 0) continue;
        const so = path.basename(line.slice(sep + 2));
        if (!packagesOf.has(so)) continue;
        line.slice(0, sep).split(', ').forEach((p) => packagesOf.get(so).add(p.split(':')[0]));
    }
    for (const [name, sonames] of needs) {
        for (const so of sonames) {
            const pkgs = [...packagesOf.get(so)];
            assert.ok(pkgs.length > 0, `${name}: no Debian package has ${so}`);
            assert.ok(pkgs.some((p) => runtime.has(p) || base.has(p)),
                `${name}: ${so} (from ${pkgs.join(' ')}) is not installed in the image`);
        }
    }
});
