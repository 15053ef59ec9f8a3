// Dubernetes ingress: reading endpoint files (nginx's njs module, njs 0.7 and
// later). Shared by the HTTP router (ingress.js) and the TCP listeners'
// (ingress-stream.js), which import it.
//
// The controller rewrites a name's files (through the engine's archive API,
// or by a rename in a bound host directory) whenever replicas are added,
// removed or drained: no nginx reload, so no client connection is closed.
// Each name has two slots, <name>.a and <name>.b; the complete one (header
// and trailer carry the same number) with the higher number is current, so
// a slot caught half written is never read.
// Format (see dubernetes-core/src/ingress/endpoints.rs):
//   dubernetes-endpoints 1 <seq>
//   <ip:port>        (one a line, none when no replica is ready)
//   end <seq>
var fs = require('fs');

var DIR = '/etc/dubernetes/endpoints/';
var MAGIC = 'dubernetes-endpoints 1 ';

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

// The servers of `name`'s current slot ([] when none is readable). The
// caller checks `name` (a DNS label or tcp_<port>): nothing else is read.
function servers(name) {
    var a = slot(DIR + name + '.a');
    var b = slot(DIR + name + '.b');
    var best = a && (!b || a.seq >= b.seq) ? a : b;
    return best ? best.servers : [];
}

// One of `list`, at random ("" when empty: nginx then answers 502, or
// closes a TCP connection).
function pick(list) {
    return list.length ? list[Math.floor(Math.random() * list.length)] : '';
}

export default { servers: servers, pick: pick };
