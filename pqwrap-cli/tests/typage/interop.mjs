// typage (npm age-encryption), a second post-quantum age implementation, driven by pqwrap's
// interop tests (pqwrap-cli/tests/typage.rs):
//   node interop.mjs keygen                      -> {"identity": "...", "recipient": "..."}
//   node interop.mjs encrypt RECIPIENT IN OUT [armor]
//   node interop.mjs decrypt IDENTITY_FILE IN OUT
import { readFileSync, writeFileSync } from "node:fs";
import * as age from "age-encryption";

const [cmd, ...args] = process.argv.slice(2);
if (cmd === "keygen") {
    const identity = await age.generateHybridIdentity();
    const recipient = await age.identityToRecipient(identity);
    process.stdout.write(JSON.stringify({ identity, recipient }) + "\n");
} else if (cmd === "encrypt") {
    const [recipient, input, output, armor] = args;
    const e = new age.Encrypter();
    e.addRecipient(recipient);
    const ct = await e.encrypt(readFileSync(input));
    writeFileSync(output, armor === "armor" ? age.armor.encode(ct) : ct);
} else if (cmd === "decrypt") {
    const [identityFile, input, output] = args;
    const d = new age.Decrypter();
    for (const line of readFileSync(identityFile, "utf8").split("\n")) {
        if (line.startsWith("AGE-SECRET-KEY-")) d.addIdentity(line.trim());
    }
    let file = readFileSync(input);
    if (file.subarray(0, 40).toString("latin1").includes("-----BEGIN AGE ENCRYPTED FILE-----")) {
        file = age.armor.decode(file.toString("latin1"));
    }
    writeFileSync(output, await d.decrypt(file));
} else {
    process.stderr.write(`unknown command ${cmd}\n`);
    process.exit(2);
}
