package jds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/sv2"
)

// Client is a Job Declarator Client's connection to a Job Declarator
// Server, in Full-Template mode. Its calls wait for their answers; use it
// from one goroutine at a time.
type Client struct {
	raw  net.Conn
	c    *sv2.Conn
	next uint32
	// Timeout bounds each call (default 30 s).
	Timeout time.Duration
	// Provided is how many transactions the server asked for (and got)
	// in the last Declare.
	Provided int
}

// Dial connects to the server at addr, checks its certificate against
// the pool's authority key and sets the connection up for job declaration
// (DECLARE_TX_DATA).
func Dial(ctx context.Context, addr string, authority [32]byte) (*Client, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("jds: dial %s: %w", addr, err)
	}
	cl := &Client{raw: raw, Timeout: 30 * time.Second}
	raw.SetDeadline(time.Now().Add(cl.Timeout))
	if cl.c, err = sv2.ClientHandshake(raw, sv2.ClientConfig{Authority: authority, Caps: sv2.FromJDServer()}); err != nil {
		raw.Close()
		return nil, fmt.Errorf("jds: handshake with %s: %w", addr, err)
	}
	m, err := cl.call(&sv2.SetupConnection{Protocol: sv2.ProtocolJobDeclaration, MinVersion: 2, MaxVersion: 2, Flags: sv2.FlagDeclareTxData})
	if err == nil {
		switch m := m.(type) {
		case *sv2.SetupConnectionSuccess:
			return cl, nil
		case *sv2.SetupConnectionError:
			err = fmt.Errorf("SetupConnection refused: %s", m.ErrorCode)
		default:
			err = fmt.Errorf("answer to SetupConnection: %s", sv2.MessageName(m.MsgType()))
		}
	}
	raw.Close()
	return nil, fmt.Errorf("jds: %s: %w", addr, err)
}

// Close closes the connection.
func (cl *Client) Close() error { return cl.raw.Close() }

// call sends m and reads one answer.
func (cl *Client) call(m sv2.Message) (sv2.Message, error) {
	cl.raw.SetDeadline(time.Now().Add(cl.Timeout))
	if err := cl.c.WriteMessages(m); err != nil {
		return nil, err
	}
	for {
		_, a, err := cl.c.ReadMessage()
		if err != nil {
			return nil, err
		}
		if a != nil {
			return a, nil
		}
	}
}

// Allocate asks for a token for user and returns it with the outputs the
// pool requires in the coinbase.
func (cl *Client) Allocate(user string) (token []byte, required []*wire.TxOut, err error) {
	cl.next++
	a, err := cl.call(&sv2.AllocateMiningJobToken{UserIdentifier: user, RequestID: cl.next})
	if err != nil {
		return nil, nil, fmt.Errorf("jds: AllocateMiningJobToken: %w", err)
	}
	ok, isOK := a.(*sv2.AllocateMiningJobTokenSuccess)
	if !isOK || ok.RequestID != cl.next {
		return nil, nil, fmt.Errorf("jds: answer to AllocateMiningJobToken %d: %s", cl.next, sv2.MessageName(a.MsgType()))
	}
	outs, err := ParseOutputs(ok.CoinbaseTxOutputs)
	if err != nil {
		return nil, nil, err
	}
	return ok.MiningJobToken, outs, nil
}

// Declaration is a template to declare.
type Declaration struct {
	Token   []byte // from Allocate
	Version uint32
	// CoinbasePrefix and CoinbaseSuffix are the coinbase (with its BIP
	// 141 fields) around the extranonce.
	CoinbasePrefix, CoinbaseSuffix []byte
	// Txs are the block's other transactions in order, serialized with
	// their witnesses: their wtxids are declared, and those the server
	// asks for are sent.
	Txs [][]byte
}

// Declare declares d and returns the token for SetCustomMiningJob; a
// refusal is a *Refusal with the server's code and details.
func (cl *Client) Declare(d Declaration) ([]byte, error) {
	cl.next++
	id := cl.next
	cl.Provided = 0
	wtxids := make([]sv2.U256, len(d.Txs))
	for i, raw := range d.Txs {
		var tx wire.MsgTx
		if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
			return nil, fmt.Errorf("jds: transaction %d: %w", i, err)
		}
		wtxids[i] = sv2.U256(tx.WitnessHash())
	}
	a, err := cl.call(&sv2.DeclareMiningJob{RequestID: id, MiningJobToken: d.Token, Version: d.Version,
		CoinbaseTxPrefix: d.CoinbasePrefix, CoinbaseTxSuffix: d.CoinbaseSuffix, WtxidList: wtxids})
	if err != nil {
		return nil, fmt.Errorf("jds: DeclareMiningJob: %w", err)
	}
	if p, ok := a.(*sv2.ProvideMissingTransactions); ok && p.RequestID == id {
		txs := make([][]byte, len(p.UnknownTxPositionList))
		for i, pos := range p.UnknownTxPositionList {
			if int(pos) >= len(d.Txs) {
				return nil, fmt.Errorf("jds: server asks for transaction %d of %d", pos, len(d.Txs))
			}
			txs[i] = d.Txs[pos]
		}
		cl.Provided = len(txs)
		if a, err = cl.call(&sv2.ProvideMissingTransactionsSuccess{RequestID: id, TransactionList: txs}); err != nil {
			return nil, fmt.Errorf("jds: ProvideMissingTransactions.Success: %w", err)
		}
	}
	switch a := a.(type) {
	case *sv2.DeclareMiningJobSuccess:
		if a.RequestID == id {
			return a.NewMiningJobToken, nil
		}
	case *sv2.DeclareMiningJobError:
		if a.RequestID == id {
			return nil, &Refusal{Code: a.ErrorCode, Detail: string(a.ErrorDetails)}
		}
	}
	return nil, fmt.Errorf("jds: answer to DeclareMiningJob %d: %s", id, sv2.MessageName(a.MsgType()))
}

// PushSolution sends a solved header of the last declared job. The
// server answers nothing; it handles the connection's messages in order,
// so the next call's answer comes after the block was submitted.
func (cl *Client) PushSolution(m *sv2.PushSolution) error {
	cl.raw.SetWriteDeadline(time.Now().Add(cl.Timeout))
	return cl.c.WriteMessages(m)
}

// SplitCoinbase serializes a coinbase with its witness and cuts out the
// enSize extranonce bytes that end its scriptSig: the prefix and suffix
// of a DeclareMiningJob.
func SplitCoinbase(tx *wire.MsgTx, enSize int) (prefix, suffix []byte, err error) {
	if len(tx.TxIn) != 1 || len(tx.TxIn[0].SignatureScript) < enSize {
		return nil, nil, errors.New("jds: not a coinbase with room for the extranonce")
	}
	var b bytes.Buffer
	if err := tx.Serialize(&b); err != nil {
		return nil, nil, err
	}
	full := b.Bytes()
	head := 4 + 1 + 36 // version, input count, outpoint
	if tx.HasWitness() {
		head += 2
	}
	n := len(tx.TxIn[0].SignatureScript)
	head += wire.VarIntSerializeSize(uint64(n))
	end := head + n
	if end > len(full) {
		return nil, nil, errors.New("jds: coinbase serialization shorter than its scriptSig")
	}
	return bytes.Clone(full[:end-enSize]), bytes.Clone(full[end:]), nil
}
