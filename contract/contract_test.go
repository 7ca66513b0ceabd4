package contract_test

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/simlab/simlab/contract"
)

// The chart stands alone too (helm install without the program): its defaults are the
// contract's, so a chart installed by hand names and lays out the topics as the stack does.
func TestChartDefaultsAreTheContract(t *testing.T) {
	_, here, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "charts", "simulator", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Kafka struct {
			TopicPrefix     string `yaml:"topicPrefix"`
			Partitioning    string `yaml:"partitioning"`
			KeyedPartitions int    `yaml:"keyedPartitions"`
		} `yaml:"kafka"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v.Kafka.TopicPrefix != contract.DefaultTopicPrefix || v.Kafka.Partitioning != contract.DefaultPartitioning ||
		v.Kafka.KeyedPartitions != contract.DefaultKeyedPartitions {
		t.Errorf("charts/simulator/values.yaml kafka: %+v, want topicPrefix %q, partitioning %q, keyedPartitions %d (contract)",
			v.Kafka, contract.DefaultTopicPrefix, contract.DefaultPartitioning, contract.DefaultKeyedPartitions)
	}
}

func TestRecordTopicPartitions(t *testing.T) {
	for _, c := range []struct {
		part           string
		sources, keyed int
		want           int
	}{
		{contract.PerSource, 16, 4, 16},
		{contract.Keyed, 16, 4, 4},
		{contract.Keyed, 16, 0, contract.DefaultKeyedPartitions},
		{"by-rack", 16, 4, 0},
	} {
		if got := contract.RecordTopicPartitions(c.part, c.sources, c.keyed); got != c.want {
			t.Errorf("RecordTopicPartitions(%q, %d, %d) = %d, want %d", c.part, c.sources, c.keyed, got, c.want)
		}
	}
}

func TestNames(t *testing.T) {
	got := []string{contract.StateTopic("sim"), contract.RecordsTopic("sim", "router"), contract.ReportsTopic("sim"), contract.WorkersGroup("sim", "router")}
	want := []string{"sim.state", "sim.records.router", "sim.reports", "sim.workers.router"}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("name %d: %q, want %q", i, got[i], want[i])
		}
	}
}
