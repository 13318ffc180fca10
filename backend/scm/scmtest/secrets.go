package scmtest

// Every fake lists the credentials it ever accepted (revoked ones included)
// so that tests can check no log line, error or non-secret read carries any.

// Secrets returns every GitHub token the fake knows.
func (g *GitHub) Secrets() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return tokenKeys(g.tokens)
}

// Secrets returns every GitLab token the fake knows, rotated ones included.
func (g *GitLab) Secrets() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return tokenKeys(g.tokens)
}

// Secrets returns every Azure DevOps PAT the fake knows, revoked ones
// included.
func (a *Azure) Secrets() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append(tokenKeys(a.tokens), a.retired...)
}

// Secrets returns every Bitbucket password and HTTP access token the fake
// knows.
func (b *Bitbucket) Secrets() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, u := range b.users {
		out = append(out, u.Password)
		out = append(out, u.Tokens...)
	}
	return append(out, tokenKeys(b.tokens)...)
}

// tokenKeys lists a token table's tokens.
func tokenKeys[V any](tokens map[string]V) []string {
	out := make([]string, 0, len(tokens))
	for t := range tokens {
		out = append(out, t)
	}
	return out
}
