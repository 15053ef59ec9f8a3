// Dubernetes ingress routing (nginx njs module; works with njs 0.7 and later).
//
// Picks the replica for a request from the pod's endpoint files, which the
// controller rewrites through the engine's archive API whenever replicas are
// added, removed or drained: no nginx reload, so no client keep-alive
// connection is closed. Each pod has two slots, <pod>.a and <pod>.b; the
// complete one (header and trailer carry the same number) with the higher
// number is current, so a slot caught half written is never read.
// Format (see dubernetes-core/src/ingress/endpoints.rs):
//   dubernetes-endpoints 1 <seq>
//   <ip:port>        (one a line, none when no replica is ready)
//   end <seq>
var fs = require('fs');

var DIR = '/etc/dubernetes/endpoints/';
var MAGIC = 'dubernetes-endpoints 1 ';
// Pod names are DNS labels (validated by the API); anything else reads nothing.
var POD = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
var IDEMPOTENT = { GET: 1, HEAD: 1, OPTIONS: 1, PUT: 1, DELETE: 1, TRACE: 1 };

function slot(path) {
    var text;
    try {
        text = fs.readFileSync(path, 'utf8');
    } catch (e) {
        return null;
    }
    var lines = text.split('\n');
    // A complete file ends with a newline: the last element is empty.
    if (lines.length < 3 || lines[lines.length - 1] !== '' || lines[0].indexOf(MAGIC) !== 0) {
        return null;
    }
    var seq = lines[0].substring(MAGIC.length);
    if (seq === '' || lines[lines.length - 2] !== 'end ' + seq) {
        return null;
    }
    return { seq: Number(seq), servers: lines.slice(1, lines.length - 2) };
}

function servers(r) {
    var pod = r.variables.dub_pod;
    if (!pod || !POD.test(pod)) {
        return [];
    }
    var a = slot(DIR + pod + '.a');
    var b = slot(DIR + pod + '.b');
    var best = a && (!b || a.seq >= b.seq) ? a : b;
    return best ? best.servers : [];
}

function pick(list) {
    return list.length ? list[Math.floor(Math.random() * list.length)] : '';
}

// The replica for this request ("" when none is ready).
function backend(r) {
    return pick(servers(r));
}

// After a replica failed the connection: another one, for idempotent methods only.
function retry(r) {
    if (!IDEMPOTENT[r.method]) {
        return '';
    }
    var failed = r.variables.upstream_addr || '';
    return pick(servers(r).filter(function (s) {
        return s !== failed;
    }));
}

export default { backend: backend, retry: retry };
