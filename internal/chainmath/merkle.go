package chainmath

// MerkleRoot returns the Bitcoin merkle root of txids (internal order),
// duplicating the last entry of an odd level. The root of one txid is the
// txid itself; of none, the zero hash.
func MerkleRoot(txids []Hash) Hash {
	if len(txids) == 0 {
		return Hash{}
	}
	level := append([]Hash(nil), txids...)
	var buf [64]byte
	for len(level) > 1 {
		if len(level)%2 == 1 {
			level = append(level, level[len(level)-1])
		}
		next := level[:0]
		for i := 0; i < len(level); i += 2 {
			copy(buf[:32], level[i][:])
			copy(buf[32:], level[i+1][:])
			next = append(next, DoubleSHA256(buf[:]))
		}
		level = next
	}
	return level[0]
}

// MerkleBranch returns the Stratum merkle branch for the coinbase: given the
// txids of every transaction after the coinbase (block order), the hashes
// that, folded in order with RootFromBranch, turn the coinbase txid into the
// merkle root. It is empty when the block holds only the coinbase.
func MerkleBranch(others []Hash) []Hash {
	// Level 0 holds a placeholder for the coinbase at index 0; at every level
	// the branch takes the sibling of index 0, which is level[1].
	level := make([]Hash, 0, len(others)+2)
	level = append(level, Hash{})
	level = append(level, others...)
	var branch []Hash
	var buf [64]byte
	for len(level) > 1 {
		if len(level)%2 == 1 {
			level = append(level, level[len(level)-1])
		}
		branch = append(branch, level[1])
		next := level[:1] // index 0 stays a placeholder
		for i := 2; i < len(level); i += 2 {
			copy(buf[:32], level[i][:])
			copy(buf[32:], level[i+1][:])
			next = append(next, DoubleSHA256(buf[:]))
		}
		level = next
	}
	return branch
}

// RootFromBranch folds a coinbase txid with a Stratum merkle branch.
func RootFromBranch(coinbase Hash, branch []Hash) Hash {
	root := coinbase
	var buf [64]byte
	for i := range branch {
		copy(buf[:32], root[:])
		copy(buf[32:], branch[i][:])
		root = DoubleSHA256(buf[:])
	}
	return root
}
