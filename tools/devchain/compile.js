// Compiles contracts/TestToken.sol into contracts/TestToken.json (ABI + creation bytecode).
// solc is not a dependency of the dev chain: install it in a scratch directory and run this from
// there (the exact commands are in README.md), so `npm ci` stays small and the output is pinned.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require(require.resolve("solc", { paths: [process.cwd()] }));

const source = path.join(__dirname, "contracts", "TestToken.sol");
const input = {
  language: "Solidity",
  sources: { "TestToken.sol": { content: fs.readFileSync(source, "utf8") } },
  settings: {
    // ganache 7.9 runs Shanghai at most: PUSH0 yes, Cancun's MCOPY/transient storage no.
    evmVersion: "shanghai",
    optimizer: { enabled: true, runs: 200 },
    metadata: { bytecodeHash: "none" },
    outputSelection: { "*": { TestToken: ["abi", "evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);
const contract = output.contracts["TestToken.sol"].TestToken;
const artifact = {
  contractName: "TestToken",
  compiler: `solc ${solc.version()}`,
  settings: { evmVersion: input.settings.evmVersion, optimizer: input.settings.optimizer },
  abi: contract.abi,
  bytecode: "0x" + contract.evm.bytecode.object,
};
fs.writeFileSync(path.join(__dirname, "contracts", "TestToken.json"), JSON.stringify(artifact, null, 2) + "\n");
console.log(`wrote contracts/TestToken.json (${contract.evm.bytecode.object.length / 2} bytes of bytecode)`);
