// Dubernetes ingress, TCP side (nginx's stream njs module, njs 0.7 and later).
//
// Picks the replica for each new TCP connection of an `expose` listener from
// the endpoint files of its listen port, /etc/dubernetes/endpoints/tcp_<port>.{a,b},
// written by the controller without a reload (ready replicas only, as for HTTP;
// same format and two-slot scheme as templates/ingress.js, see
// dubernetes-core/src/ingress/endpoints.rs). No ready replica: "" and nginx
// closes the connection.
var fs = require('fs');

var DIR = '/etc/dubernetes/endpoints/';
var MAGIC = 'dubernetes-endpoints 1 ';
var PORT = /^[0-9]{1,5}$/;

function slot(path) {
    var text;
    try {
        text = fs.readFileSync(path, 'utf8');
    } catch (e) {
        return null;
    }
    var lines = text.split('\n');
    if (lines.length < 3 || lines[lines.length - 1] !== '' || lines[0].indexOf(MAGIC) !== 0) {
        return null;
    }
    var seq = lines[0].substring(MAGIC.length);
    if (seq === '' || lines[lines.length - 2] !== 'end ' + seq) {
        return null;
    }
    return { seq: Number(seq), servers: lines.slice(1, lines.length - 2) };
}

// The replica for this connection ("" when none is ready).
function backend(s) {
    var port = s.variables.server_port;
    if (!port || !PORT.test(port)) {
        return '';
    }
    var a = slot(DIR + 'tcp_' + port + '.a');
    var b = slot(DIR + 'tcp_' + port + '.b');
    var best = a && (!b || a.seq >= b.seq) ? a : b;
    var list = best ? best.servers : [];
    return list.length ? list[Math.floor(Math.random() * list.length)] : '';
}

export default { backend: backend };
