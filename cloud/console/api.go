package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/iotagent/iotagent/cloud/defender"
	"github.com/iotagent/iotagent/cloud/jobs"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/rules"
	"github.com/iotagent/iotagent/cloud/shadow"
)

// maxBody bounds a request body: a shadow update (AWS: 8 KiB of state) or
// a job document (32 KiB) with room for JSON around it.
const maxBody = 64 << 10

type certView struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

type thingView struct {
	Name         string            `json:"name"`
	Type         string            `json:"type,omitempty"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	Connection   Connection        `json:"connection"`
	Certificates []certView        `json:"certificates"`
	Groups       []string          `json:"groups"`
}

type shadowView struct {
	Name     string          `json:"name"` // "" for the classic shadow
	Document json.RawMessage `json:"document,omitempty"`
}

type thingDetail struct {
	thingView
	Shadows []shadowView `json:"shadows"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func (c *Console) thingView(t registry.Thing) (thingView, error) {
	v := thingView{Name: t.Name, Type: t.TypeName, Attributes: t.Attributes, Connection: c.o.Presence.Connection(t.Name),
		Certificates: []certView{}}
	for _, id := range t.Principals {
		cert, err := c.o.Registry.DescribeCertificate(id)
		if err != nil {
			return v, fmt.Errorf("certificate %s of %s: %w", id, t.Name, err)
		}
		v.Certificates = append(v.Certificates, certView{ID: cert.ID, Status: cert.Status})
	}
	groups, err := c.o.Registry.ThingGroupsOf(t.Name)
	if err != nil {
		return v, fmt.Errorf("groups of %s: %w", t.Name, err)
	}
	v.Groups = append([]string{}, groups...)
	return v, nil
}

func (c *Console) listThings(w http.ResponseWriter, _ *http.Request) {
	things, err := c.o.Registry.ListThings()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	out := make([]thingView, 0, len(things))
	for _, t := range things {
		v, err := c.thingView(t)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *Console) getThing(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("thing")
	t, err := c.o.Registry.DescribeThing(name)
	if errors.Is(err, registry.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no thing %q", name))
		return
	} else if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	v, err := c.thingView(t)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	d := thingDetail{thingView: v}
	named, err := c.o.Shadows.ListNamed(name)
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("named shadows of %s: %w", name, err))
		return
	}
	slices.Sort(named)
	for _, sh := range append([]string{""}, named...) {
		doc, err := c.o.Shadows.Get(name, sh, nil)
		var se *shadow.Error
		switch {
		case errors.As(err, &se) && se.Code == http.StatusNotFound:
			d.Shadows = append(d.Shadows, shadowView{Name: sh})
		case err != nil:
			writeError(w, http.StatusInternalServerError, fmt.Errorf("shadow %q of %s: %w", sh, name, err))
			return
		default:
			d.Shadows = append(d.Shadows, shadowView{Name: sh, Document: doc})
		}
	}
	writeJSON(w, http.StatusOK, d)
}

// readJSON reads a bounded JSON body sent with Content-Type
// application/json (which another site's page cannot send without a
// preflight).
func readJSON(r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return nil, fmt.Errorf("Content-Type %q: want application/json", ct)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("body over %d bytes", maxBody)
	}
	return b, nil
}

// updateShadow applies an update document (AWS's: {"state": {"desired":
// ...}}) to the classic shadow or, with ?name=, a named one, as
// UpdateThingShadow does: the device gets the delta.
func (c *Console) updateShadow(w http.ResponseWriter, r *http.Request) {
	thing := r.PathValue("thing")
	body, err := readJSON(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if _, err := c.o.Registry.DescribeThing(thing); err != nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("no thing %q", thing))
		return
	}
	doc, err := c.o.Shadows.Update(thing, r.URL.Query().Get("name"), body)
	var se *shadow.Error
	if errors.As(err, &se) {
		writeJSON(w, se.Code, map[string]any{"error": se.Message, "code": se.Code})
		return
	} else if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	c.log.Info("console: shadow updated", "thing", thing, "shadow", r.URL.Query().Get("name"))
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(doc)
}

type jobView struct {
	jobs.Job
	Executions []jobs.Execution `json:"executions"`
}

func (c *Console) listJobs(w http.ResponseWriter, _ *http.Request) {
	list := c.o.Jobs.ListJobs("")
	out := make([]jobView, 0, len(list))
	for _, j := range list {
		ex, err := c.o.Jobs.ListJobExecutionsForJob(j.JobID, "")
		if err != nil {
			writeError(w, http.StatusInternalServerError, fmt.Errorf("executions of job %s: %w", j.JobID, err))
			return
		}
		out = append(out, jobView{Job: j, Executions: append([]jobs.Execution{}, ex...)})
	}
	// Newest first.
	slices.SortFunc(out, func(a, b jobView) int { return int(b.Seq - a.Seq) })
	writeJSON(w, http.StatusOK, out)
}

// createJobRequest is what the page's form sends: targets are thing names.
type createJobRequest struct {
	JobID       string   `json:"jobId"`
	Things      []string `json:"things"`
	Document    string   `json:"document"`
	Description string   `json:"description"`
}

func (c *Console) createJob(w http.ResponseWriter, r *http.Request) {
	body, err := readJSON(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var req createJobRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("job request: %w", err))
		return
	}
	if len(req.Things) == 0 {
		writeError(w, http.StatusBadRequest, errors.New("a job needs at least one target thing"))
		return
	}
	var targets []string
	for _, t := range req.Things {
		targets = append(targets, c.o.Jobs.ThingARN(strings.TrimSpace(t)))
	}
	j, err := c.o.Jobs.CreateJob(jobs.CreateJobInput{JobID: req.JobID, Targets: targets,
		Document: req.Document, Description: req.Description})
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, jobs.ErrConflict) {
			status = http.StatusConflict
		}
		writeError(w, status, err)
		return
	}
	c.log.Info("console: job created", "job", j.JobID, "targets", len(targets))
	writeJSON(w, http.StatusOK, j)
}

func (c *Console) listViolations(w http.ResponseWriter, _ *http.Request) {
	v := c.o.Defender.ListActiveViolations(defender.Filter{})
	writeJSON(w, http.StatusOK, append([]defender.ActiveViolation{}, v...))
}

type ruleView struct {
	rules.Rule
	Actions []string      `json:"actionKinds"`
	Metrics rules.Metrics `json:"metrics"`
}

type rulesView struct {
	Received  int64      `json:"received"`
	Dropped   int64      `json:"dropped"`
	QueueSize int        `json:"queueSize"`
	Queued    int        `json:"queued"`
	Rules     []ruleView `json:"rules"`
	Time      time.Time  `json:"time"`
}

func (c *Console) listRules(w http.ResponseWriter, _ *http.Request) {
	m := c.o.Rules.Metrics()
	out := rulesView{Received: m.Received, Dropped: m.Dropped, QueueSize: m.QueueSize, Queued: m.Queued,
		Rules: []ruleView{}, Time: c.o.Now()}
	for _, r := range c.o.Rules.List() {
		v := ruleView{Rule: r, Metrics: m.Rules[r.Name], Actions: []string{}}
		for _, a := range r.Actions {
			v.Actions = append(v.Actions, actionKind(a))
		}
		out.Rules = append(out.Rules, v)
	}
	writeJSON(w, http.StatusOK, out)
}

func actionKind(a rules.Action) string {
	switch {
	case a.Republish != nil:
		return "republish → " + a.Republish.Topic
	case a.HTTP != nil:
		return "http → " + a.HTTP.URL
	case a.S3 != nil:
		return "s3 → " + a.S3.BucketName
	}
	return "?"
}
