// Package chainmath holds the Bitcoin arithmetic and encodings that the
// coordinator, the agent and the chain backends share: the 80-byte block
// header, double SHA-256, compact targets (nBits) and difficulty, merkle
// roots and Stratum merkle branches, and the coinbase transaction split into
// coinb1/coinb2 around the extranonce slot.
//
// Byte order follows Bitcoin: hashes are kept in internal order (the raw
// sha256d output); Display reverses them to the hex block explorers print.
package chainmath
