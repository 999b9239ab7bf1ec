package moduletest

import (
	"testing"

	"github.com/datawarehouse/dw/internal/hosttest"
)

func TestMain(m *testing.M) { hosttest.Main(m) }
